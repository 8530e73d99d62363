# The collections image: worker, HTTP API and migrations (used by docker-compose.yml).
FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY collections_domain ./collections_domain
COPY workflows ./workflows
COPY activities ./activities
COPY api ./api
COPY worker.py starter.py ./
RUN pip install --no-cache-dir '.[postgres]'
# The worker imports /app's modules, which `nobody` cannot write bytecode beside: compile them
# here, or the workflow sandbox compiles the workflow module again for every case it starts.
RUN python -m compileall -q /app
USER nobody
CMD ["python", "worker.py"]
