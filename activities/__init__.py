"""Temporal activities: every I/O of the collections workflow (database, messages, providers)."""

from activities.collection_activities import CollectionActivities

__all__ = ["CollectionActivities"]
