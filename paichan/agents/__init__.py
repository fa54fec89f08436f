"""Agents on Ray negotiating over the Redis Streams bus: plants, lines, suppliers."""
