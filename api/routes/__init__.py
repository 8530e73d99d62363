"""The API's routers, one per resource: ``operations``, ``cases``, ``reconciliation``, ``keys``."""
