"""Arrives with a later issue; the app is installed so its models and migrations have a home."""
