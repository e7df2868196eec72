FROM python:3.11-slim
ENV PYTHONDONTWRITEBYTECODE=1 PYTHONUNBUFFERED=1
WORKDIR /app
COPY pyproject.toml constraints.txt README.md ./
# Installs the dependencies declared in pyproject.toml at the versions pinned in constraints.txt.
RUN pip install --no-cache-dir -c constraints.txt .
COPY . .
RUN REDIS_URL=redis://localhost:6379/0 python manage.py collectstatic --noinput
RUN useradd --create-home app && mkdir -p /app/var && chown -R app /app/var
USER app
EXPOSE 8000
CMD ["daphne", "-b", "0.0.0.0", "-p", "8000", "omnichannel.asgi:application"]
