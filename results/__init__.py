"""The result store and (later) the tables, plots and leaderboard rendered from it."""

from results.store import RecordStore

__all__ = ["RecordStore"]
