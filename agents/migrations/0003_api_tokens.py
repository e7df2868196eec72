"""API tokens stored hashed. Keys of DRF's authtoken app (used before) keep working: each is copied as its
SHA-256, named "Imported token"; the old table is left as it was (the app is no longer installed)."""

import hashlib

import django.db.models.deletion
from django.conf import settings
from django.db import migrations, models


def import_authtoken_keys(apps, schema_editor):
    connection = schema_editor.connection
    if "authtoken_token" not in connection.introspection.table_names():
        return
    ApiToken = apps.get_model("agents", "ApiToken")
    with connection.cursor() as cursor:
        cursor.execute("SELECT key, user_id, created FROM authtoken_token")
        rows = cursor.fetchall()
    for key, user_id, created in rows:
        token, made = ApiToken.objects.get_or_create(
            key_hash=hashlib.sha256(key.encode()).hexdigest(),
            defaults={"user_id": user_id, "name": "Imported token", "prefix": key[:10]})
        if made:
            ApiToken.objects.filter(pk=token.pk).update(created_at=created)


class Migration(migrations.Migration):

    dependencies = [
        ('agents', '0002_content_types'),
        migrations.swappable_dependency(settings.AUTH_USER_MODEL),
    ]

    operations = [
        migrations.CreateModel(
            name='ApiToken',
            fields=[
                ('id', models.BigAutoField(auto_created=True, primary_key=True, serialize=False, verbose_name='ID')),
                ('name', models.CharField(help_text='What uses it, e.g. “Shop backend”.', max_length=100)),
                ('prefix', models.CharField(editable=False, max_length=12)),
                ('key_hash', models.CharField(editable=False, max_length=64, unique=True)),
                ('created_at', models.DateTimeField(auto_now_add=True)),
                ('last_used_at', models.DateTimeField(blank=True, editable=False, null=True)),
                ('user', models.ForeignKey(on_delete=django.db.models.deletion.CASCADE, related_name='api_tokens', to=settings.AUTH_USER_MODEL)),
            ],
            options={
                'verbose_name': 'API token',
                'ordering': ['-created_at'],
            },
        ),
        migrations.RunPython(import_authtoken_keys, migrations.RunPython.noop),
    ]
