"""claimsflow's domain and I/O code, testable without the Functions host (docs/architecture.md).

The top of the package holds what every part needs: ``config`` (the one settings object),
``errors`` (the one classifier), ``redact``, ``logs``, ``ids``, ``bodies``, ``clock``,
``metrics``, ``storage`` (the one storage factory), ``pool`` (the one pool for blocking I/O),
``retry`` and ``durable`` (the one way to start an orchestration). These import nothing below
them. The sub-packages, from the bottom up:

* ``state``: what the app keeps in the state account's Tables and Blobs.
* ``lake``: the Delta tables and the staged road into them.
* ``transfer``: moving one file from a URL into the attachment store.
* ``plugins``: the plugin framework.
* ``xact``: the XACT domain.
* ``claimx``: the ClaimX domain.

``runtime``, ``health``, ``invariants`` and ``ops`` wire those together. Nothing here imports
``functions``, the top-level ``plugins``, ``local_host`` or ``claimsflow``.
"""
