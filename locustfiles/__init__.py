"""The files a user passes to ``locust -f``: one per backend, and nothing else.

``jina_api.py`` (the Jina API and any OpenAI-compatible embeddings API), ``sagemaker.py`` (SigV4-signed
SageMaker endpoints) and ``self_hosted.py`` (the bundled target server). Everything they are built
from lives in ``embed_bench.load`` (the Locust glue) and ``embed_bench.core`` (Locust-free), so
``locust -f locustfiles/`` imports these three and no library module by accident.
"""
