"""The custom metrics API (``custom.metrics.k8s.io/v1beta2``) the operator serves to the HPA.

Pure parts: ``selectors`` (label selectors), ``samples`` (readings and freshness), ``targets``
(which sidecars may be read), ``responses`` and ``query`` (the documents), ``forwarding`` (what goes
to another adapter, translated between versions), ``auth`` (front-proxy identities), ``certs`` (the
serving certificate the operator makes). I/O: ``scraper`` (reads the sidecars), ``server``
(aiohttp), ``certkeeper`` (the certificate's Secret and the APIService's caBundle), ``forwarder``
(asks the adapter behind v1beta1), ``service`` (wiring).
"""
