"""Domain code shared by the collections workflow, its activities and its clients.

Split by reason to change:

- ``case``: the case itself: its contract types (``contract``), and the pure, deterministic case
  core the workflow sequences (``ledger``, ``money``, ``promises``, ``pauses``, ``plan``,
  ``agents``, ``progress``, ``endings``, ``status``; ``core`` is its public face).
- ``rules``: policy data and the rules read from it (``policy`` and ``policies/``, ``ladder``,
  ``calendar``, ``compliance``, ``plans``, ``templates``, ``validation``).
- ``store``: the database (``models``, ``db``, ``migrations``), what activities write
  (``records``, ``writer``), held money (``reconciliation``), preferences and audit.
- ``portfolio``: the loan book, the delinquency scan and its schedules, servicing (payments,
  reversals, instalments, adjustments to the right place), the Home Credit data and ``simulate``.
- ``ops``: settings, logs, metrics, Temporal binaries, the dev server, worker wiring.

Nothing here talks to Temporal except ``client``, ``portfolio`` (scan, schedules, servicing,
simulation) and ``ops`` (dev server, wiring).
"""
