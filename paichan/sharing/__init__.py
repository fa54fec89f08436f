"""Cross-enterprise capacity sharing: sessions, signed messages, the ledger and each enterprise's agent.

See docs/SHARING.md for the protocol and for what crosses an enterprise's boundary.
"""
