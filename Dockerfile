FROM python:3.11-slim
WORKDIR /app
COPY pyproject.toml README.md ./
COPY bridge ./bridge
COPY static ./static
RUN pip install --no-cache-dir -e .
ENV BRIDGE_HOST=0.0.0.0 BRIDGE_PORT=8080
EXPOSE 8080
CMD ["bridge", "serve"]
