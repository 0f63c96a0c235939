"""The relay backend: catalog models served by other image APIs (`[[channels]]`).

- `backend.py`: the `AsyncBackend` the worker's relay lane calls;
- `router.py`: channel order, failover, per-channel concurrency, Retry-After, disabling;
- `breaker.py`: the circuit breaker per channel;
- `results.py`: upstream images made pixgate's (downloaded through the SSRF guard, decoded);
- `apis/`: one module per channel type's wire format (openai, siliconflow, volcengine, ark,
  a1111).
"""
