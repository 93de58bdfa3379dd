"""The XACT (Verisk XactAnalysis) domain: parsing and validating events, ingest, the event and
attachment orchestrators, their activities, blob paths, table specs and rows.

May import: the top of ``shared``, ``state``, ``lake``, ``transfer`` and ``plugins``; never another
domain, nor the wiring (``runtime``, ``durable``, ``health``) that assembles the domains.
"""
