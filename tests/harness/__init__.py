"""Shared test harness: builders, fake and real servers, worker clusters.

Test modules import from here, never from each other.
"""
