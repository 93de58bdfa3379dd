"""The ClaimX domain: webhook events, the ClaimX REST API, entity rows, media downloads and the
Eventhouse poller.

Owns: event parsing and trace ids (``events``), the Delta table specs it registers (``tables``),
the API client and its circuit breaker (``api``, ``circuit``), API answers turned into entity rows
(``transformers``), one handler per event type (``handlers``), media paths and downloads
(``paths``, ``media``), ingest, orchestrators and activities, and the poller.

May import: the top-level leaves of ``shared`` (config, errors, redact, logs, ids, metrics,
storage, retry, durable), the state, lake and transfer code, and the plugin framework. Never
``functions/``, ``claimsflow/``, ``local_host/``, top-level ``plugins/`` or another domain
(``shared.xact``).
"""
