"""Collection KPIs from what the product recorded: roll rates, cure rates, promises, contact,
recovery and cost (``kpis.py``, DuckDB over the product's tables), the statistics of
champion/challenger (``stats.py``), and the report people read (``report.py``: tables and a
self-contained HTML page with charts). The shapes every reader shares are in ``figures.py``."""
