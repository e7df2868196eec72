"""The benchmark data set, written with set-based SQL (generate_series / INSERT ... SELECT).

100,000 conversations in 8 inboxes of mixed kinds, 50,000 contacts with ~90,000 identities,
1,000,000 messages, tags, segment memberships and timeline events, plus bench users: a supervisor
(sees every inbox) and ten agents in two teams. Everything is written in one transaction, so the
data is either all there or not at all; ``ensure_seeded()`` skips the work when it is there.

Shape (deterministic, ``setseed``):

* inboxes: webchat 30 %, email 20 %, sms / whatsapp / messenger 10 % each, instagram 8 %,
  x 6 %, api 6 % of the conversations. Team A (bench-agent-0..4) has webchat and sms.
* conversations: 20 % open (85 % of them waiting, i.e. ``waiting_since`` set), 10 % pending,
  3 % on hold, 30 % solved, 37 % closed (0.2 % of those merged into the contact's other one);
  most are assigned; 30 % are tagged.
* messages: conversations 1..10 (the "heavy" ones, all owned by contacts 1 and 2 across several
  channels) get 500 messages each; the other 995,000 are spread over the rest (about 10 each),
  interleaved in id/time order with the messages of ~100 neighbouring conversations as in a live
  system. 55 % incoming; outgoing are agent (a few internal notes), bot or system messages.
  Bodies come from a 120-word vocabulary (``refund`` is in ~7 % of messages); one message in 997
  contains the rare word ``chargeback`` (for the search benchmark).
"""

from __future__ import annotations

import time
from datetime import timedelta

from django.conf import settings
from django.contrib.auth import get_user_model
from django.db import DatabaseError, connection, transaction
from django.utils import timezone

SEED_VERSION = 1
N_CONTACTS = 50_000
N_CONVERSATIONS = 100_000
N_MESSAGES = 1_000_000
HEAVY_CONVERSATIONS = 10  # conversations 1..10: 500 messages each
HEAVY_EVERY = N_MESSAGES // (HEAVY_CONVERSATIONS * 500)  # every 200th message goes to a heavy one
N_BODIES = 5_000  # distinct message bodies, picked per message by hashing

# (name, kind, share of conversations in %)
INBOXES = [
    ("bench webchat", "webchat", 30),
    ("bench email", "email", 20),
    ("bench sms", "sms", 10),
    ("bench whatsapp", "whatsapp", 10),
    ("bench messenger", "messenger", 10),
    ("bench instagram", "instagram", 8),
    ("bench x", "x", 6),
    ("bench api", "api", 6),
]
TEAM_A_INBOXES = ("bench webchat", "bench sms")
SUPERVISOR = "bench-supervisor"
AGENT = "bench-agent-0"  # the measured agent: team A, sees 2 of the 8 inboxes
N_AGENTS = 10

TAGS = ["billing", "shipping", "returns", "refund", "bug", "feature-request", "vip", "complaint", "urgent",
        "order-status", "account", "login", "payment-failed", "damaged", "warranty", "feedback", "spam",
        "follow-up", "escalated", "churn-risk"]
SEGMENTS = [  # name, label, colour, priority level
    ("VIP spend 5", "VIP-Spend 5", "#d97706", 5),
    ("VIP upset", "VIP-Upset-2", "#dc2626", 4),
    ("Enterprise", "Enterprise", "#2563eb", 3),
    ("Trial", "Trial", "#6b7280", 1),
]
FIRST_NAMES = ["Ana", "Ben", "Chloé", "David", "Elif", "Farid", "Grace", "Hiro", "Ines", "Jonas", "Kemal",
               "Lena", "Mateo", "Nora", "Omar", "Priya", "Quentin", "Rosa", "Sven", "Tariq", "Uma", "Victor",
               "Wen", "Ximena", "Yusuf", "Zoe", "Amara", "Bruno", "Carmen", "Dmitri", "Esther", "Felix",
               "Gita", "Hugo", "Ivana", "Jamal", "Kaito", "Lucia", "Marek", "Nadia"]
LAST_NAMES = ["Silva", "Müller", "Dubois", "Rossi", "García", "Kowalski", "Novak", "Yilmaz", "Sato", "Kim",
              "Okafor", "Mensah", "Haddad", "Cohen", "Larsen", "Nielsen", "Virtanen", "Popescu", "Horvat",
              "Ivanova", "Smith", "Jones", "Brown", "Taylor", "Wilson", "Singh", "Patel", "Khan", "Ali",
              "Nguyen", "Tran", "Chen", "Wang", "Li", "Zhang", "Santos", "Oliveira", "Pereira", "Costa",
              "Fernández", "López", "Martínez", "Gómez", "Díaz", "Moreau", "Laurent", "Lefebvre", "Fischer",
              "Weber", "Schneider"]
WORDS = (
    "hello hi thanks thank you please order package delivery shipping tracking number arrived late "
    "yesterday today tomorrow week refund return exchange size colour color wrong item damaged broken box "
    "invoice payment card charged twice account password login reset email phone address change cancel "
    "subscription plan upgrade downgrade price discount code coupon voucher help question issue problem "
    "still waiting reply update status store online app website error page checkout cart stock available "
    "warranty repair replacement label courier pickup customs fee receipt bank transfer paypal wallet "
    "sorry apologise inconvenience understand check look into confirm resolved ticket agent manager "
    "call back asap urgent great awesome perfect okay sure fine"
).split()


def _bench_db_guard() -> None:
    name = settings.DATABASES["default"]["NAME"]
    if not settings.DATABASES["default"]["ENGINE"].endswith("postgresql") or "bench" not in str(name):
        raise SystemExit(f"refusing to seed database {name!r}: benchmarks need a PostgreSQL database whose "
                         "name contains 'bench' (scripts/bench.sh uses omnichannel_bench)")


def _scalar(sql: str, params: object = None):
    with connection.cursor() as cursor:
        cursor.execute(sql, params)
        return cursor.fetchone()[0]


def seed_state() -> str:
    """'seeded', 'empty', or a description of foreign/partial bench data."""
    inboxes = _scalar("SELECT count(*) FROM conversations_inbox WHERE settings ? 'bench_seed'")
    if inboxes == 0:
        return "empty"
    current = _scalar("SELECT count(*) FROM conversations_inbox WHERE settings @> %s::jsonb",
                      [f'{{"bench_seed": {SEED_VERSION}}}'])
    if current != len(INBOXES):
        return f"bench data of another seed version ({inboxes} bench inboxes)"
    conversations = _scalar(
        "SELECT count(*) FROM conversations_conversation c JOIN conversations_inbox i ON i.id = c.inbox_id "
        "WHERE i.settings ? 'bench_seed'")
    messages = _scalar(
        "SELECT count(*) FROM conversations_message m JOIN conversations_inbox i ON i.id = m.inbox_id "
        "WHERE i.settings ? 'bench_seed'")
    if (conversations, messages) != (N_CONVERSATIONS, N_MESSAGES):
        return f"bench data with {conversations} conversations and {messages} messages"
    return "seeded"


def ensure_seeded(*, reseed: bool = False) -> None:
    _bench_db_guard()
    if reseed:
        from django.core.management import call_command

        print("== reseed: flushing the bench database", flush=True)
        call_command("flush", interactive=False, verbosity=0)
    state = seed_state()
    if state == "seeded":
        print(f"== seed: reusing {N_CONVERSATIONS:,} conversations / {N_MESSAGES:,} messages", flush=True)
        return
    if state != "empty":
        raise SystemExit(f"bench database holds {state}; run with --reseed to start over")
    started = time.monotonic()
    print(f"== seed: writing {N_CONVERSATIONS:,} conversations / {N_MESSAGES:,} messages", flush=True)
    with transaction.atomic():
        _seed()
    _step(started, "committed")
    with connection.cursor() as cursor:
        for table in ("conversations_contact", "conversations_contactidentity", "conversations_contactsegment",
                      "conversations_conversation", "conversations_conversation_tags",
                      "conversations_conversationevent", "conversations_message"):
            cursor.execute(f"VACUUM (ANALYZE) {table}")
        _step(started, "vacuum analyze")
        try:  # write the seed's dirty pages out now rather than during the measurements
            cursor.execute("CHECKPOINT")
            _step(started, "checkpoint")
        except DatabaseError as exc:  # needs superuser or pg_checkpoint
            print(f"   (no CHECKPOINT: {exc})".strip(), flush=True)


def _step(started: float, what: str) -> None:
    print(f"   {time.monotonic() - started:6.1f}s  {what}", flush=True)


def _reserve_ids(cursor, table: str, n: int) -> int:
    """Reserve ids base+1..base+n of `table` (identity column) and return base."""
    cursor.execute(f"LOCK TABLE {table} IN EXCLUSIVE MODE")
    cursor.execute(f"SELECT COALESCE(max(id), 0) FROM {table}")
    base = cursor.fetchone()[0]
    cursor.execute("SELECT setval(pg_get_serial_sequence(%s, 'id'), %s)", [table, base + n])
    return base


def _drop_plain_indexes(cursor, table: str) -> list[str]:
    """Drop `table`'s full (non-partial) indexes that back no constraint; returns their definitions.

    Partial indexes stay: their predicates do not round-trip exactly through pg_indexes.indexdef.
    """
    cursor.execute("""
        SELECT c.relname, pg_get_indexdef(x.indexrelid) FROM pg_index x JOIN pg_class c ON c.oid = x.indexrelid
         WHERE x.indrelid = %s::regclass AND x.indpred IS NULL
           AND NOT EXISTS (SELECT 1 FROM pg_constraint k WHERE k.conindid = x.indexrelid)
    """, [table])
    found = cursor.fetchall()
    for name, _definition in found:
        cursor.execute(f'DROP INDEX "{name}"')
    return [definition for _name, definition in found]


def _inbox_index_sql(expr: str) -> str:
    """SQL for the 1-based inbox index of conversation number `expr`, weighted by INBOXES' shares."""
    parts, cumulative = [], 0
    for i, (_name, _kind, share) in enumerate(INBOXES, start=1):
        cumulative += share
        parts.append(f"WHEN mod({expr} * 37, 100) < {cumulative} THEN {i}")
    assert cumulative == 100
    return (f"(CASE WHEN {expr} <= {HEAVY_CONVERSATIONS} THEN 1 + mod({expr} - 1, {len(INBOXES)}) "
            + " ".join(parts) + " END)")


def _seed_users_and_config():
    """Inboxes, teams, tags, segments and the bench users (a few rows, through the ORM)."""
    from agents.actions import do_set_agent_role
    from agents.models import AgentProfile, Team
    from conversations.models import Inbox, Segment, Tag

    user_model = get_user_model()
    inboxes = [Inbox.objects.create(name=name, kind=kind, settings={"bench_seed": SEED_VERSION})
               for name, kind, _share in INBOXES]
    team_a = Team.objects.create(name="bench team A")
    team_b = Team.objects.create(name="bench team B")
    team_a.inboxes.set([i for i in inboxes if i.name in TEAM_A_INBOXES])
    team_b.inboxes.set([i for i in inboxes if i.name not in TEAM_A_INBOXES])

    def make(username: str, display: str, role: str) -> AgentProfile:
        user = user_model.objects.create_user(username=username, email=f"{username}@bench.example",
                                              first_name=display.split()[0], last_name=display.split()[-1])
        agent = AgentProfile.objects.create(user=user, display_name=display, languages=["en"])
        return do_set_agent_role(agent=agent, role=role)

    make(SUPERVISOR, "Sam Supervisor", AgentProfile.Role.SUPERVISOR)
    agents = [make(f"bench-agent-{i}", f"Agent {i}", AgentProfile.Role.AGENT) for i in range(N_AGENTS)]
    for i, agent in enumerate(agents):
        agent.teams.set([team_a if i < N_AGENTS // 2 else team_b])
    Tag.objects.bulk_create([Tag(name=t) for t in TAGS], ignore_conflicts=True)
    segments = [Segment.objects.create(name=n, label=label, color=color, priority_level=level)
                for n, label, color, level in SEGMENTS]
    return {
        "inboxes": [i.id for i in inboxes],
        "team_a": team_a.id,
        "team_b": team_b.id,
        "team_a_inboxes": [i + 1 for i, (name, _k, _s) in enumerate(INBOXES) if name in TEAM_A_INBOXES],
        "users_a": [a.user_id for a in agents[: N_AGENTS // 2]],
        "users_b": [a.user_id for a in agents[N_AGENTS // 2:]],
        "users": [a.user_id for a in agents],
        "tags": list(Tag.objects.filter(name__in=TAGS).order_by("id").values_list("id", flat=True)),
        "segments": [s.id for s in segments],
    }


def _seed() -> None:
    started = time.monotonic()
    cfg = _seed_users_and_config()
    _step(started, "inboxes, teams, users, tags, segments")
    t0 = timezone.now() - timedelta(days=366)
    with connection.cursor() as cursor:
        cursor.execute("SET LOCAL work_mem = '256MB'")
        cursor.execute("SET LOCAL maintenance_work_mem = '512MB'")
        cursor.execute("SELECT setseed(0.4242)")
        # Bulk load: build the big tables' plain indexes once at the end instead of row by row, and
        # skip the row-by-row foreign-key checks when we may (the rows are built from joins on the
        # referenced rows). The schema ends up exactly as migrated.
        recreate = [*_drop_plain_indexes(cursor, "conversations_message"),
                    *_drop_plain_indexes(cursor, "conversations_conversation")]
        cursor.execute("SELECT current_setting('is_superuser') = 'on'")
        if cursor.fetchone()[0]:
            cursor.execute("SET LOCAL session_replication_role = replica")
        cb = _reserve_ids(cursor, "conversations_contact", N_CONTACTS)
        vb = _reserve_ids(cursor, "conversations_conversation", N_CONVERSATIONS)
        mb = _reserve_ids(cursor, "conversations_message", N_MESSAGES)
        p = {
            **cfg, "cb": cb, "vb": vb, "mb": mb, "t0": t0, "n_contacts": N_CONTACTS,
            "n_conversations": N_CONVERSATIONS, "n_messages": N_MESSAGES, "first": FIRST_NAMES,
            "last": LAST_NAMES, "words": WORDS,
            "countries": ["US", "GB", "DE", "FR", "ES", "BR", "IN", "JP"], "langs": ["en", "es", "fr", "de"],
            "plans": ["free", "pro", "business"],
        }
        # One message "tick" in the year the data spans; message m was sent at t0 + m ticks.
        tick = f"interval '{366 * 86400 / N_MESSAGES:.3f} seconds'"

        def run(sql: str, what: str) -> None:
            cursor.execute(sql, p)
            _step(started, f"{what} ({cursor.rowcount:,} rows)" if cursor.rowcount >= 0 else what)

        run("""
            INSERT INTO conversations_contact (id, name, email, phone, country, language, custom_attributes,
                                               created_at, updated_at, merged_into_id)
            SELECT %(cb)s + g,
                   (%(first)s::text[])[1 + mod(g, 40)] || ' ' || (%(last)s::text[])[1 + mod(g / 40, 50)],
                   'contact' || g || '@bench.example',
                   CASE WHEN mod(g, 2) = 0 THEN '+1555' || lpad(g::text, 7, '0') ELSE '' END,
                   (%(countries)s::text[])[1 + mod(g, 8)],
                   (%(langs)s::text[])[1 + mod(g, 4)],
                   jsonb_build_object('spend_tier', mod(g, 6), 'plan', (%(plans)s::text[])[1 + mod(g, 3)]),
                   %(t0)s::timestamptz - interval '30 days' + g * interval '10 minutes',
                   %(t0)s::timestamptz - interval '30 days' + g * interval '10 minutes',
                   NULL
            FROM generate_series(1, %(n_contacts)s) AS g
        """, "contacts")
        run("""
            INSERT INTO conversations_contactidentity (kind, scope, value, created_at, contact_id)
            SELECT 'email', '', c.email, c.created_at, c.id FROM conversations_contact c
             WHERE c.id > %(cb)s AND c.id <= %(cb)s + %(n_contacts)s
            UNION ALL
            SELECT 'phone', '', c.phone, c.created_at, c.id FROM conversations_contact c
             WHERE c.id > %(cb)s AND c.id <= %(cb)s + %(n_contacts)s AND c.phone <> ''
            UNION ALL
            SELECT 'webchat', '', 'visitor-' || md5(c.id::text), c.created_at, c.id FROM conversations_contact c
             WHERE c.id > %(cb)s AND c.id <= %(cb)s + %(n_contacts)s AND mod(c.id - %(cb)s, 3) = 0
        """, "contact identities")
        run("""
            INSERT INTO conversations_contactsegment (source, added_at, contact_id, segment_id)
            SELECT CASE WHEN mod(g, 20) = 0 THEN 'rule' ELSE 'manual' END, %(t0)s, %(cb)s + g,
                   (%(segments)s::bigint[])[1 + mod(g / 10, 4)]
              FROM generate_series(1, %(n_contacts)s) AS g WHERE mod(g, 10) = 0 OR g <= 2
            UNION
            SELECT 'manual', %(t0)s, %(cb)s + g, (%(segments)s::bigint[])[1]
              FROM generate_series(1, %(n_contacts)s) AS g WHERE mod(g, 37) = 0 OR g <= 2
            ON CONFLICT DO NOTHING
        """, "contact segments")

        # Per-message draws (conversation, direction, sender, delivery) in a temp table, so the
        # conversations can be written with their real first/last message times and preview.
        run(f"""
            CREATE TEMP TABLE bench_body ON COMMIT DROP AS
            SELECT i, array_to_string(ARRAY(
                       SELECT (%(words)s::text[])[1 + floor(random() * cardinality(%(words)s::text[]))::int]
                         FROM generate_series(1, 3 + mod(i * 7, 14))), ' ') AS body
              FROM generate_series(1, {N_BODIES}) AS i
        """, "message bodies")
        n_conv, n_msg = N_CONVERSATIONS - HEAVY_CONVERSATIONS, N_MESSAGES - HEAVY_CONVERSATIONS * 500
        run(f"""
            CREATE TEMP TABLE bench_msg ON COMMIT DROP AS
            SELECT m, conv_g, direction, sender_type,
                   CASE WHEN sender_type = 'agent' AND r3 < 0.04 THEN 'note' ELSE 'message' END AS kind,
                   1 + mod(m * 7919, {N_BODIES}) AS body_i, r3, r4
              FROM (
                SELECT m, conv_g, r3, r4,
                       CASE WHEN r1 < 0.55 THEN 'in' ELSE 'out' END AS direction,
                       CASE WHEN r1 < 0.55 THEN 'contact' WHEN r2 < 0.80 THEN 'agent'
                            WHEN r2 < 0.95 THEN 'bot' ELSE 'system' END AS sender_type
                  FROM (
                    SELECT m,
                           CASE WHEN mod(m, {HEAVY_EVERY}) = 0 THEN 1 + mod(m / {HEAVY_EVERY}, {HEAVY_CONVERSATIONS})
                                -- The j-th other message belongs around conversation j * convs / msgs; the
                                -- first message of each such window stays there (no conversation is
                                -- left without messages), the others jitter by up to +-50 conversations.
                                WHEN j = 0 OR j * {n_conv} / {n_msg} > (j - 1) * {n_conv} / {n_msg}
                                THEN {HEAVY_CONVERSATIONS + 1} + j * {n_conv} / {n_msg}
                                ELSE {HEAVY_CONVERSATIONS + 1} + LEAST(GREATEST(
                                    j * {n_conv} / {n_msg} + floor((random() - 0.5) * 100)::bigint,
                                    0), {n_conv - 1})
                           END AS conv_g,
                           random() AS r1, random() AS r2, random() AS r3, random() AS r4
                      FROM (SELECT m, m - 1 - m / {HEAVY_EVERY} AS j
                              FROM generate_series(1::bigint, %(n_messages)s) AS m) AS ms
                  ) draws
              ) s
        """, "message draws")
        run("""
            CREATE TEMP TABLE bench_conv ON COMMIT DROP AS
            SELECT conv_g, min(m) AS first_m, max(m) AS last_m,
                   max(m) FILTER (WHERE direction = 'in') AS last_in_m,
                   min(m) FILTER (WHERE sender_type = 'agent' AND kind = 'message') AS first_agent_m
              FROM bench_msg GROUP BY conv_g
        """, "conversation aggregates")
        cursor.execute("ANALYZE bench_msg")
        cursor.execute("ANALYZE bench_conv")

        def ts(expr: str) -> str:
            return f"(%(t0)s::timestamptz + ({expr}) * {tick})"

        run(f"""
            INSERT INTO conversations_conversation (
                id, status, priority, subject, meta, created_at, updated_at, first_agent_reply_at,
                last_customer_message_at, last_message_at, waiting_since, solved_at, closed_at,
                last_message_preview, assignee_id, contact_id, merged_into_id, team_id, inbox_id,
                sla_metric, sla_paused)
            SELECT %(vb)s + x.g,
                   x.status,
                   CASE WHEN x.r3 < 0.15 THEN 0 WHEN x.r3 < 0.75 THEN 1 WHEN x.r3 < 0.93 THEN 2 ELSE 3 END,
                   CASE WHEN x.ix = 2 THEN 'Order ' || (100000 + x.g) || ': ' || left(fb.body, 60) ELSE '' END,
                   CASE WHEN x.ix = 1 THEN jsonb_build_object('page_url', '/products/' || mod(x.g, 500),
                                                              'prechat', jsonb_build_object('topic', 'sales'))
                        ELSE '{{}}'::jsonb END,
                   {ts("a.first_m")} - interval '1 minute',
                   {ts("a.last_m")},
                   {ts("a.first_agent_m")},
                   {ts("a.last_in_m")},
                   {ts("a.last_m")},
                   CASE WHEN x.status = 'open' AND x.r2 < 0.85 THEN {ts("COALESCE(a.last_in_m, a.last_m)")} END,
                   CASE WHEN x.status IN ('solved', 'closed') THEN {ts("a.last_m")} + interval '1 hour' END,
                   CASE WHEN x.status = 'closed' THEN {ts("a.last_m")} + interval '1 day' END,
                   left(lb.body, 200),
                   CASE WHEN x.status = 'open' AND x.r4 >= 0.6 THEN NULL
                        WHEN x.ix = ANY(%(team_a_inboxes)s::int[])
                        THEN (%(users_a)s::int[])[1 + floor(x.r5 * cardinality(%(users_a)s::int[]))::int]
                        ELSE (%(users_b)s::int[])[1 + floor(x.r5 * cardinality(%(users_b)s::int[]))::int] END,
                   %(cb)s + CASE WHEN x.g <= {HEAVY_CONVERSATIONS} THEN 1 + mod(x.g - 1, 2)
                                 ELSE 1 + mod(x.g - 1, %(n_contacts)s) END,
                   CASE WHEN x.status = 'closed' AND mod(x.g, 500) = 7 AND x.g > {HEAVY_CONVERSATIONS}
                             AND x.g + %(n_contacts)s <= %(n_conversations)s
                        THEN %(vb)s + x.g + %(n_contacts)s END,
                   CASE WHEN x.ix = ANY(%(team_a_inboxes)s::int[]) THEN %(team_a)s ELSE %(team_b)s END,
                   (%(inboxes)s::bigint[])[x.ix],
                   '', false
              FROM (
                SELECT g.g, {_inbox_index_sql("g.g")} AS ix, r2, r3, r4, r5,
                       CASE WHEN r1 < 0.20 THEN 'open' WHEN r1 < 0.30 THEN 'pending'
                            WHEN r1 < 0.33 THEN 'on_hold' WHEN r1 < 0.63 THEN 'solved' ELSE 'closed' END AS status
                  FROM (SELECT g, random() AS r1, random() AS r2, random() AS r3, random() AS r4,
                               random() AS r5
                          FROM generate_series(1, %(n_conversations)s) AS g) g
              ) x
              JOIN bench_conv a ON a.conv_g = x.g
              JOIN bench_msg fm ON fm.m = a.first_m
              JOIN bench_body fb ON fb.i = fm.body_i
              JOIN bench_msg lm ON lm.m = a.last_m
              JOIN bench_body lb ON lb.i = lm.body_i
             ORDER BY x.g
        """, "conversations")
        run(f"""
            INSERT INTO conversations_message (
                id, uuid, direction, sender_type, kind, body, provider_message_id, delivery_status,
                failure_reason, delivery_attempts, created_at, conversation_id, inbox_id, sender_user_id)
            SELECT %(mb)s + b.m, gen_random_uuid(), b.direction, b.sender_type, b.kind,
                   bb.body || CASE WHEN mod(b.m, 997) = 0 THEN ' chargeback' ELSE '' END,
                   CASE WHEN b.kind = 'note' THEN NULL ELSE 'bench-' || b.m END,
                   CASE WHEN b.direction = 'in' OR b.kind = 'note' THEN 'received'
                        WHEN b.r4 < 0.01 THEN 'failed' WHEN b.r4 < 0.40 THEN 'read'
                        WHEN b.r4 < 0.80 THEN 'delivered' ELSE 'sent' END,
                   CASE WHEN b.direction = 'out' AND b.kind = 'message' AND b.r4 < 0.01
                        THEN 'Provider error 30003: unreachable destination handset' ELSE '' END,
                   CASE WHEN b.direction = 'in' OR b.kind = 'note' THEN 0 WHEN b.r4 < 0.01 THEN 3 ELSE 1 END,
                   {ts("b.m")},
                   c.id, c.inbox_id,
                   CASE WHEN b.sender_type = 'agent' THEN (%(users)s::int[])[1 + mod(b.m, 10)] END
              FROM bench_msg b
              JOIN conversations_conversation c ON c.id = %(vb)s + b.conv_g
              JOIN bench_body bb ON bb.i = b.body_i
             ORDER BY b.m
        """, "messages")
        run(f"""
            INSERT INTO conversations_conversation_tags (conversation_id, tag_id)
            SELECT %(vb)s + g, (%(tags)s::bigint[])[1 + mod(g, {len(TAGS)})]
              FROM generate_series(1, %(n_conversations)s) AS g WHERE mod(g * 13, 10) < 3
            UNION
            SELECT %(vb)s + g, (%(tags)s::bigint[])[1 + mod(g / {len(TAGS)} + 7, {len(TAGS)})]
              FROM generate_series(1, %(n_conversations)s) AS g WHERE mod(g * 13, 10) = 0
            ON CONFLICT DO NOTHING
        """, "conversation tags")
        run("""
            INSERT INTO conversations_conversationevent (kind, data, created_at, actor_id, conversation_id)
            SELECT 'created', '{}'::jsonb, c.created_at, NULL::integer, c.id
              FROM conversations_conversation c
             WHERE c.id > %(vb)s AND c.id <= %(vb)s + %(n_conversations)s
            UNION ALL
            SELECT 'assigned', jsonb_build_object('assignee', c.assignee_id), c.created_at + interval '2 minutes',
                   NULL::integer, c.id
              FROM conversations_conversation c
             WHERE c.id > %(vb)s AND c.id <= %(vb)s + %(n_conversations)s AND c.assignee_id IS NOT NULL
            UNION ALL
            SELECT 'status_changed', jsonb_build_object('old', 'open', 'new', c.status), c.solved_at,
                   c.assignee_id, c.id
              FROM conversations_conversation c
             WHERE c.id > %(vb)s AND c.id <= %(vb)s + %(n_conversations)s AND c.solved_at IS NOT NULL
        """, "conversation events")
        cursor.execute("SET LOCAL session_replication_role = DEFAULT")
        for definition in recreate:
            cursor.execute(definition)
        _step(started, f"{len(recreate)} indexes rebuilt")
