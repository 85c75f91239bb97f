"""Utilities: events and writers, logging, seeding, environment info."""
