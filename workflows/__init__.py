"""Temporal workflows (deterministic code only: no I/O, no wall clock, no randomness)."""

from workflows.loan_collection import LoanCollectionWorkflow

__all__ = ["LoanCollectionWorkflow"]
