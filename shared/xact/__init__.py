"""The XACT (Verisk XactAnalysis) domain: parsing and validating events, ingest, the event and
attachment orchestrators, their activities, blob paths, table specs and rows.

May import: everything in ``shared`` except other domains.
"""
