"""Reporting: read the store, write tables, plots and the status view."""
