"""Moving one attachment from a URL into the attachment store: the URL policy (SSRF checks on
every hop), presigned-URL expiry, file-type rules, the HTTP client, the streamed, resumable
transfer, and the attachment stores (Blob and DataLake).

May import: the top of ``shared``. Knows no domain: callers hand it a URL and a path.
"""
