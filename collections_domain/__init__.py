"""Domain code shared by the collections workflow, its activities and its clients.

Case, signal and status types (`case`), the escalation policy (`policy`), pure ladder and
calendar rules (`ladder`, `calendar`), database models (`models`, `db`), settings
(`settings`) and the Home Credit data loader (`home_credit`). Nothing here talks to Temporal
except `client`, `devserver` and `simulation`.
"""
