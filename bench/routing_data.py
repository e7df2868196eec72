"""Data for bench_routing: 500 agents in 20 teams over 10 inboxes, 50 routing rules, contacts with history.

Run by bench/bench_routing.py in subprocesses whose environment points at the routing bench database
(``omnichannel_bench_routing``), never at the console benchmark's data:

    python -m bench.routing_data seed     # once; a no-op when the same SEED_VERSION is already there
    python -m bench.routing_data reset    # delete what earlier measurements created (back to the seed)

Shape (deterministic, ``random.Random(SEED)``):

* 10 inboxes: 3 web chat, 2 email, SMS, WhatsApp, Messenger, Instagram, API.
* 20 teams of 1-10 inboxes (least busy, round robin, most capable, sticky; all auto-accept).
* 500 agents (10 supervisors): 60 % online, 15 % away, 25 % offline; limits 3 live chats / 10 async;
  each in 1-2 teams, 1-3 of 12 skills at levels 1-5; every agent already has 0-2 open chats and
  0-5 open asynchronous conversations (well under the limits), on contacts of their own.
* 6 segments (rule-based VIP tiers, upset customers, beta testers; manual Enterprise with an account
  manager), 20,000 returning contacts with 1-5 identities, custom attributes (spend tier, plan, NPS,
  state, company) and ~2 closed conversations each (2 messages each, assigned, closed 1 h to 180 d
  ago); 3 % of them have an open high-priority conversation in the API inbox.
* 50 active rules. Positions 1-40 test VIP level, open issues, segments, keywords, pre-chat
  departments, page URL, campaign, attributes, business hours, zip, timezone, ...: most arrivals match
  none of them. Positions 41-50 (language desks, US regions, Europe, then one per channel group)
  catch most arrivals, so a typical decision evaluates 41-50 rules. The API inbox has no rule of its
  own: those arrivals fall through to the inbox's teams (the default path).

``Arrivals`` makes the new conversations both measurements send (same mix in both): inbox by share,
55 % returning contacts (each used once per run) and 45 % new ones, pre-chat answers, page URLs,
message text in 6 languages with keywords.
"""

from __future__ import annotations

import argparse
import json
import random
from datetime import timedelta

from bench.harness import setup_django

SEED_VERSION = 1
SEED = 20261122
N_AGENTS = 500
N_SUPERVISORS = 10
N_CONTACTS = 20_000
CHAT_LIMIT, ASYNC_LIMIT = 3, 10
MARKER_INBOX = "rb web store"  # its settings hold the seed marker and the id watermarks

# name, kind, share of arrivals (%)
INBOXES = [
    ("rb web store", "webchat", 25),
    ("rb web help center", "webchat", 10),
    ("rb web partner portal", "webchat", 5),
    ("rb email support", "email", 18),
    ("rb email billing", "email", 7),
    ("rb sms", "sms", 8),
    ("rb whatsapp", "whatsapp", 12),
    ("rb messenger", "messenger", 7),
    ("rb instagram", "instagram", 5),
    ("rb api mobile app", "api", 3),
]
ALL = list(range(1, 11))
# name, inbox numbers (1-based, as in INBOXES), method, primary-membership weight
TEAMS = [
    ("Support EN", [1, 2, 4, 10], "least_busy", 60),
    ("Support EU", [1, 2, 4], "least_busy", 25),
    ("Billing", [1, 4, 5], "round_robin", 25),
    ("Sales", [1, 3], "least_busy", 20),
    ("Returns", [1, 4, 7], "least_busy", 20),
    ("Technical", [2, 4, 10], "most_capable", 25),
    ("Spanish desk", [1, 2, 4, 6, 7], "least_busy", 25),
    ("French desk", [1, 2, 4, 7], "least_busy", 15),
    ("German desk", [1, 2, 4, 7], "least_busy", 15),
    ("Portuguese desk", [1, 4, 6, 7], "least_busy", 12),
    ("Social", [8, 9], "least_busy", 25),
    ("Messaging", [6, 7], "least_busy", 35),
    ("US East", [1, 4, 6], "least_busy", 25),
    ("US West", [1, 4, 6], "round_robin", 25),
    ("VIP desk", ALL, "sticky", 12),
    ("Escalations", ALL, "least_busy", 15),
    ("Enterprise", [3, 4, 5], "sticky", 12),
    ("Retention", [1, 4, 5], "least_busy", 15),
    ("Partners", [3, 10], "least_busy", 10),
    ("Night shift", [1, 2, 4, 6, 7, 8, 9], "round_robin", 20),
]
SKILLS = ["Spanish", "French", "German", "Portuguese", "Italian", "Billing", "Returns", "Technical",
          "Enterprise accounts", "Public posts", "Shipping", "Warranty"]
DESK_SKILL = {"Spanish desk": "Spanish", "French desk": "French", "German desk": "German",
              "Portuguese desk": "Portuguese", "Billing": "Billing", "Returns": "Returns", "Technical": "Technical",
              "Enterprise": "Enterprise accounts", "Social": "Public posts"}
# name, label, priority level, rule (None: by hand), has an account manager
SEGMENTS = [
    ("VIP Gold", "VIP-Gold", 5, {"match": "all", "conditions": [
        {"field": "attributes.spend_tier", "op": "gte", "value": 5}]}, True),
    ("Enterprise", "ENT", 4, None, True),
    ("VIP Silver", "VIP-Silver", 3, {"match": "all", "conditions": [
        {"field": "attributes.spend_tier", "op": "gte", "value": 3}]}, False),
    ("Upset", "Upset", 2, {"match": "all", "conditions": [{"field": "attributes.nps", "op": "lte", "value": 3}]},
     False),
    ("Beta testers", "Beta", 0, {"match": "all", "conditions": [
        {"field": "attributes.beta", "op": "eq", "value": "yes"}]}, False),
    ("Newsletter", "", 0, None, False),
]
US_NORTHEAST = ["ME", "NH", "VT", "MA", "RI", "CT", "NY", "NJ", "PA"]
US_WEST = ["CA", "OR", "WA", "NV", "AZ", "UT", "ID", "MT", "WY", "CO", "NM", "AK", "HI"]
US_OTHER = ["TX", "FL", "IL", "OH", "GA", "NC", "MI", "VA", "TN", "MO", "MN", "WI"]
COUNTRIES = [("US", 40), ("GB", 10), ("DE", 7), ("ES", 6), ("MX", 5), ("FR", 6), ("BR", 5), ("PT", 2), ("CA", 5),
             ("AU", 4), ("AT", 1), ("CH", 1), ("IT", 2), ("NL", 2), ("IE", 1), ("IN", 3)]
COUNTRY_LANGUAGE = {"US": "en", "GB": "en", "DE": "de", "ES": "es", "MX": "es", "FR": "fr", "BR": "pt", "PT": "pt",
                    "CA": "en", "AU": "en", "AT": "de", "CH": "de", "IT": "it", "NL": "en", "IE": "en", "IN": "en"}
DEPARTMENTS = [("General", 58), ("Billing", 10), ("Sales", 8), ("Technical", 8), ("Returns", 6), ("Partnerships", 2),
               ("Wholesale", 2), ("Press", 1), ("Legal", 1), ("Security", 1), ("After-hours", 1), ("Careers", 2)]
BODIES = {
    "en": [
        "Hi, I ordered a tent last week and the tracking number does not work. Can you help?",
        "Hello, my card was debited two times for one order, please fix it.",
        "My password reset link is not arriving and I can't log in to my account.",
        "Do you ship to Canada? I would like to order two sleeping bags and a stove.",
        "The zipper on my backpack broke after two weeks, is that covered by the warranty?",
        "I want to return the boots I bought, they are too small. How do I get a refund?",
        "Can I change the delivery address for my order? I am moving next week.",
        "Hello, is the blue rain jacket available in size medium? The site says sold out.",
        "Your courier left my package at the wrong house and now it is gone.",
        "I need help setting up the app on my new phone, it keeps crashing at start.",
        "Hi there, quick question about the opening hours of your Denver store.",
        "Can you tell me when the new hiking poles will be back in stock?",
    ],
    "es": ["Hola, mi pedido llegó roto y necesito un reembolso por favor.",
           "Buenas tardes, quiero cambiar la dirección de entrega de mi pedido.",
           "No puedo iniciar sesión en mi cuenta desde ayer, ¿me pueden ayudar?"],
    "fr": ["Bonjour, ma commande n'est toujours pas arrivée, pouvez-vous vérifier le suivi ?",
           "Je voudrais retourner les chaussures, elles sont trop petites pour moi."],
    "de": ["Hallo, meine Bestellung ist beschädigt angekommen. Was kann ich jetzt tun?",
           "Ich möchte meine Rechnung als PDF erhalten, bitte schicken Sie sie mir."],
    "pt": ["Olá, o meu pedido ainda não chegou, podem verificar o rastreamento?",
           "Gostaria de trocar o tamanho da jaqueta que comprei na semana passada."],
    "it": ["Buongiorno, il mio ordine non è ancora arrivato, potete controllare la spedizione?"],
}
ESCALATION_BODIES = ["I will talk to my lawyer if this is not fixed today.",
                     "I filed a chargeback with my bank because nobody answers my emails."]
ARRIVAL_LANGUAGES = [("en", 70), ("es", 10), ("fr", 6), ("de", 6), ("pt", 5), ("it", 3)]


def _cond(field: str, op: str, value=None) -> dict:
    c = {"field": field, "op": op}
    if value is not None:
        c["value"] = value
    return c


def rules_spec() -> list[dict]:
    """The 50 rules in position order. Targets name teams, skills or the agent ``@key-account``."""
    weekdays_night = {"tz": "America/Los_Angeles",
                      "days": {d: [["00:00", "07:00"], ["20:00", "24:00"]] for d in ("mon", "tue", "wed", "thu",
                                                                                      "fri")}}
    r = [
        dict(name="VIP Gold", target="team:VIP desk", set_priority=3, set_tags="vip",
             conditions=[_cond("vip_level", "gte", 5)]),
        dict(name="Open issue owner", target="last_agent", secondary="team:Escalations",
             conditions=[_cond("history.open_high_priority", "exists")]),
        dict(name="Enterprise account manager", target="account_manager", secondary="team:Enterprise",
             conditions=[_cond("segment", "eq", "Enterprise")]),
        dict(name="Legal threats", target="team:Escalations", set_priority=2, set_tags="escalated",
             conditions=[_cond("text", "any_of", ["lawyer", "lawsuit", "attorney", "chargeback", "fraud"])]),
        dict(name="Security reports", target="skill:Technical:4", set_tags="security",
             conditions=[_cond("prechat.department", "eq", "Security")]),
        dict(name="Public Facebook posts", target="skill:Public posts:2", secondary="team:Social",
             conditions=[_cond("channel", "eq", "messenger"), _cond("meta.post_type", "eq", "public")]),
        dict(name="Press", target="team:Escalations", conditions=[_cond("prechat.department", "eq", "Press")]),
        dict(name="Key account Acme", target="agent:key-account", secondary="team:Enterprise",
             conditions=[_cond("attributes.company", "eq", "Acme Corp")]),
        dict(name="Legal department", target="team:Escalations",
             conditions=[_cond("prechat.department", "eq", "Legal")]),
        dict(name="Wholesale", target="team:Sales",
             conditions=[_cond("prechat.department", "in", ["Wholesale", "Bulk orders"])]),
        dict(name="Partnerships", target="team:Partners",
             conditions=[_cond("prechat.department", "eq", "Partnerships")]),
        dict(name="Partner portal pages", target="team:Partners",
             conditions=[_cond("inbox", "eq", "inbox:3"), _cond("page_url", "contains", "/partners/")]),
        dict(name="Black Friday campaign", target="team:Sales",
             conditions=[_cond("campaign", "eq", "black-friday-2026")]),
        dict(name="Checkout pages", target="team:Sales", secondary="team:Support EN",
             conditions=[_cond("page_url", "contains", "/checkout")]),
        dict(name="Upset customers", target="team:Retention", secondary="team:Escalations",
             conditions=[_cond("segment", "eq", "Upset")]),
        dict(name="Churn risk", target="team:Retention",
             conditions=[_cond("attributes.plan", "eq", "business"), _cond("attributes.nps", "lte", 4)]),
        dict(name="Beta testers", target="skill:Technical:3",
             conditions=[_cond("attributes.beta", "eq", "yes"), _cond("channel", "in", ["webchat", "email"])]),
        dict(name="Frequent customers", target="team:Escalations",
             conditions=[_cond("history.conversations", "gt", 5)]),
        dict(name="VIP Silver", target="team:VIP desk", secondary="team:Support EN", set_tags="vip",
             conditions=[_cond("vip_level", "gte", 3), _cond("channel", "in", ["webchat", "whatsapp"])]),
        dict(name="Billing pre-chat", target="team:Billing", conditions=[_cond("prechat.department", "eq", "Billing")]),
        dict(name="Billing mailbox", target="team:Billing", conditions=[_cond("inbox", "eq", "inbox:5")]),
        dict(name="Invoice words", target="skill:Billing:2", match="any",
             conditions=[_cond("text", "any_of", ["invoice", "receipt", "charged twice", "billing"]),
                         _cond("prechat.topic", "eq", "invoice")]),
        dict(name="Sales pre-chat", target="team:Sales", conditions=[_cond("prechat.department", "eq", "Sales")]),
        dict(name="Technical pre-chat", target="team:Technical",
             conditions=[_cond("prechat.department", "eq", "Technical")]),
        dict(name="Login problems", target="skill:Technical:2",
             conditions=[_cond("text", "any_of", ["password", "log in", "login", "2fa", "two-factor"]),
                         _cond("channel", "in", ["webchat", "email", "api"])]),
        dict(name="Returns pre-chat", target="team:Returns", conditions=[_cond("prechat.department", "eq", "Returns")]),
        dict(name="Return words", target="skill:Returns:2",
             conditions=[_cond("text", "any_of", ["return", "refund", "exchange", "rma"]),
                         _cond("prechat.department", "exists")]),
        dict(name="Warranty", target="skill:Warranty:2",
             conditions=[_cond("text", "any_of", ["warranty", "guarantee"]), _cond("channel", "eq", "email")]),
        dict(name="Shipping on SMS", target="skill:Shipping:2",
             conditions=[_cond("text", "any_of", ["tracking", "shipment", "courier"]), _cond("channel", "eq", "sms")]),
        dict(name="Urgent", target="team:Escalations", conditions=[_cond("priority", "gte", 2)]),
        dict(name="After-hours line", target="team:Night shift",
             conditions=[_cond("prechat.department", "eq", "After-hours"),
                         _cond("business_hours", "within", weekdays_night)]),
        dict(name="Italian", target="skill:Italian:2", secondary="team:Support EU",
             conditions=[_cond("language", "eq", "it")]),
        dict(name="Quebec", target="team:French desk",
             conditions=[_cond("country", "eq", "CA"), _cond("language", "eq", "fr")]),
        dict(name="Latin America", target="team:Spanish desk",
             conditions=[_cond("country", "in", ["MX", "AR", "CO", "CL", "PE"]), _cond("channel", "neq", "email")]),
        dict(name="Enterprise plan", target="team:Enterprise", conditions=[_cond("attributes.plan", "eq", "enterprise")]),
        dict(name="High spenders on chat", target="team:VIP desk",
             conditions=[_cond("channel", "eq", "webchat"), _cond("attributes.spend_tier", "gte", 4)]),
        dict(name="New York City", target="team:US East",
             conditions=[_cond("zip", "startswith", ["100", "101", "102", "112"])]),
        dict(name="Asia-Pacific time zones", target="team:Night shift",
             conditions=[_cond("timezone", "in", ["Asia/Tokyo", "Asia/Singapore", "Australia/Sydney"])]),
        dict(name="Australia and New Zealand", target="team:Night shift",
             conditions=[_cond("country", "in", ["AU", "NZ"]), _cond("channel", "neq", "email")]),
        dict(name="Creators on Instagram", target="team:Social",
             conditions=[_cond("channel", "eq", "instagram"), _cond("attributes.creator", "eq", "yes")]),
        # 41-50: where most arrivals end up.
        dict(name="Spanish speakers", target="skill:Spanish:3", secondary="team:Spanish desk",
             conditions=[_cond("language", "eq", "es")]),
        dict(name="French speakers", target="team:French desk", conditions=[_cond("language", "eq", "fr")]),
        dict(name="DACH", target="team:German desk", match="any",
             conditions=[_cond("language", "eq", "de"), _cond("country", "in", ["DE", "AT", "CH"])]),
        dict(name="Portuguese speakers", target="team:Portuguese desk", match="any",
             conditions=[_cond("language", "eq", "pt"), _cond("country", "eq", "BR")]),
        dict(name="US Northeast", target="team:US East", secondary="team:Support EN",
             conditions=[_cond("country", "eq", "US"), _cond("state", "in", US_NORTHEAST)]),
        dict(name="US West", target="team:US West", secondary="team:Support EN",
             conditions=[_cond("country", "eq", "US"), _cond("state", "in", US_WEST)]),
        dict(name="Europe", target="team:Support EU",
             conditions=[_cond("country", "in", ["GB", "IE", "NL", "BE", "DK", "SE", "IT"])]),
        dict(name="Social channels", target="team:Social", conditions=[_cond("channel", "in", ["messenger", "instagram",
                                                                                              "x"])]),
        dict(name="Messaging apps", target="team:Messaging",
             conditions=[_cond("channel", "in", ["sms", "whatsapp"])]),
        dict(name="Web and email", target="team:Support EN", secondary="team:Night shift",
             conditions=[_cond("channel", "in", ["webchat", "email"])]),
    ]
    assert len(r) == 50, len(r)
    return r


def _pick(rng: random.Random, weighted: list[tuple]) -> object:
    return rng.choices([w[0] for w in weighted], weights=[w[1] for w in weighted])[0]


def marker() -> dict | None:
    from conversations.models import Inbox

    inbox = Inbox.objects.filter(name=MARKER_INBOX).first()
    return (inbox.settings or {}).get("bench_routing") if inbox else None


def seed() -> dict:
    """Write the data set once (about 20 s); returns the marker with the id watermarks."""
    from django.contrib.auth import get_user_model
    from django.contrib.auth.hashers import make_password
    from django.db import connection, transaction
    from django.utils import timezone

    from agents.actions import do_set_agent_role
    from agents.models import AgentProfile, AgentSkill, Skill, Team
    from conversations import channels
    from conversations.actions import identity_scope
    from conversations.conditions import segment_matches
    from conversations.models import (
        Contact,
        ContactIdentity,
        ContactSegment,
        Conversation,
        Inbox,
        Message,
        Segment,
    )
    from omnichannel.models import RealtimeEvent
    from routing.models import RoutingConfig, RoutingRule

    found = marker()
    if found and found.get("version") == SEED_VERSION:
        return found
    if Inbox.objects.exists() or Contact.objects.exists():
        raise SystemExit("the routing bench database holds other or older data: run with --reseed")
    rng = random.Random(SEED)
    now = timezone.now()
    User = get_user_model()
    with transaction.atomic():
        inboxes = [Inbox.objects.create(name=n, kind=k) for n, k, _ in INBOXES]
        teams = []
        for name, numbers, method, _ in TEAMS:
            team = Team.objects.create(name=name, distribution_method=method, auto_accept=True)
            team.inboxes.set([inboxes[i - 1] for i in numbers])
            teams.append(team)
        skills = {name: Skill.objects.create(name=name) for name in SKILLS}
        team_by_name = {t.name: t for t in teams}

        password = make_password(None)
        users = User.objects.bulk_create([
            User(username=f"rb-agent-{i:03d}", first_name=f"Agent{i:03d}", last_name="Bench", password=password,
                 is_active=True) for i in range(N_AGENTS)])
        statuses = []
        for _ in range(N_AGENTS):
            x = rng.random()
            statuses.append("online" if x < 0.60 else "away" if x < 0.75 else "offline")
        agents = AgentProfile.objects.bulk_create([
            AgentProfile(user=u, display_name=f"Agent {i:03d}", status=statuses[i], max_concurrent=CHAT_LIMIT,
                         max_concurrent_async=ASYNC_LIMIT, last_seen_at=now, status_changed_at=now,
                         last_assigned_at=now - timedelta(seconds=rng.randint(60, 86400)),
                         languages=["en"]) for i, u in enumerate(users)])
        weights = [t[3] for t in TEAMS]
        memberships = []
        agent_teams: dict[int, list[Team]] = {}
        for agent in agents:
            chosen = {rng.choices(range(len(teams)), weights=weights)[0]}
            if rng.random() < 0.4:
                chosen.add(rng.choices(range(len(teams)), weights=weights)[0])
            agent_teams[agent.pk] = [teams[i] for i in sorted(chosen)]
            memberships += [AgentProfile.teams.through(agentprofile_id=agent.pk, team_id=teams[i].pk)
                            for i in sorted(chosen)]
        AgentProfile.teams.through.objects.bulk_create(memberships)
        agent_skills = []
        for agent in agents:
            have = {}
            for team in agent_teams[agent.pk]:
                if team.name in DESK_SKILL:
                    have[DESK_SKILL[team.name]] = rng.randint(3, 5)
            for name in rng.sample(SKILLS, rng.randint(0, 2)):
                have.setdefault(name, rng.randint(1, 5))
            agent_skills += [AgentSkill(agent=agent, skill=skills[n], level=lvl) for n, lvl in have.items()]
        AgentSkill.objects.bulk_create(agent_skills)
        for agent in agents[:N_SUPERVISORS]:
            do_set_agent_role(agent=agent, role=AgentProfile.Role.SUPERVISOR)
        key_account = agents[N_SUPERVISORS]  # "@key-account": an online agent of the Enterprise team
        AgentProfile.objects.filter(pk=key_account.pk).update(status="online")
        AgentProfile.teams.through.objects.get_or_create(agentprofile_id=key_account.pk,
                                                         team_id=team_by_name["Enterprise"].pk)

        segs = {}
        for name, label, level, rule, managed in SEGMENTS:
            manager = users[rng.randrange(N_SUPERVISORS, N_AGENTS)] if managed else None
            segs[name] = Segment.objects.create(name=name, label=label, priority_level=level, rule=rule,
                                                account_manager=manager)
        RoutingConfig.objects.update_or_create(pk=1, defaults={"overflow": "queue"})

        def target(spec: str | None):
            if not spec:
                return "", None, None, None, 1
            kind, _, rest = spec.partition(":")
            if kind == "team":
                return "team", None, team_by_name[rest], None, 1
            if kind == "skill":
                name, _, level = rest.partition(":")
                return "skill", None, None, skills[name], int(level or 1)
            if kind == "agent":
                return "agent", key_account, None, None, 1
            return kind, None, None, None, 1

        for position, spec in enumerate(rules_spec(), start=1):
            kind, agent, team, skill, level = target(spec["target"])
            skind, sagent, steam, sskill, _ = target(spec.get("secondary"))
            conditions = []
            for c in spec["conditions"]:
                if isinstance(c.get("value"), str) and c["value"].startswith("inbox:"):
                    c = {**c, "value": inboxes[int(c["value"][6:]) - 1].pk}
                conditions.append(c)
            RoutingRule.objects.create(
                name=spec["name"], position=position * 10, is_active=True, match=spec.get("match", "all"),
                conditions=conditions, target=kind, target_agent=agent, target_team=team, target_skill=skill,
                skill_min_level=level, secondary_target=skind, secondary_agent=sagent, secondary_team=steam,
                secondary_skill=sskill, set_priority=spec.get("set_priority"), set_tags=spec.get("set_tags", ""))

        # Returning contacts, their identities, attributes and segment memberships.
        contacts = []
        for i in range(N_CONTACTS):
            country = _pick(rng, COUNTRIES)
            attrs = {"spend_tier": rng.choices(range(7), weights=[32, 27, 20, 12, 5, 2, 2])[0],
                     "plan": rng.choices(["free", "pro", "business", "enterprise"], weights=[50, 30, 15, 5])[0]}
            if rng.random() < 0.15:
                attrs["nps"] = rng.randint(0, 10)
            if country == "US":
                attrs["state"] = rng.choice(US_NORTHEAST + US_WEST + US_OTHER + US_OTHER)
                if rng.random() < 0.3:
                    attrs["zip"] = f"{rng.randint(1000, 99999):05d}"
            if rng.random() < 0.05:
                attrs["beta"] = "yes"
            if rng.random() < 0.01:
                attrs["company"] = "Acme Corp"
            if rng.random() < 0.03:
                attrs["creator"] = "yes"
            language = COUNTRY_LANGUAGE[country] if rng.random() < 0.5 else ""
            contacts.append(Contact(name=f"Customer {i}", email=f"customer{i}@example.com",
                                    phone=f"+1555{i:07d}", country=country, language=language,
                                    custom_attributes=attrs))
        contacts = Contact.objects.bulk_create(contacts, batch_size=2000)
        by_kind = {kind: [ib for ib in inboxes if ib.kind == kind] for _, kind, _ in INBOXES}
        identities = []
        contact_inboxes: dict[int, list] = {}
        for c in contacts:
            reach = [by_kind["email"][0]]
            identities.append(ContactIdentity(contact=c, kind="email", scope="", value=c.email))
            for inbox, share in ((inboxes[0], 0.6), (inboxes[1], 0.2), (inboxes[2], 0.05), (inboxes[7], 0.2),
                                 (inboxes[8], 0.1)):
                if rng.random() < share:
                    identities.append(ContactIdentity(contact=c, kind=channels.for_inbox(inbox).identity,
                                                      scope=identity_scope(inbox), value=f"v-{c.pk}-{inbox.pk}"))
                    reach.append(inbox)
            if rng.random() < 0.5:
                identities.append(ContactIdentity(contact=c, kind="phone", scope="", value=c.phone))
                identities.append(ContactIdentity(contact=c, kind="whatsapp", scope="", value=c.phone))
                reach += [inboxes[5], inboxes[6]]
            contact_inboxes[c.pk] = reach
        ContactIdentity.objects.bulk_create(identities, batch_size=5000)
        memberships = []
        for c in contacts:
            for seg in segs.values():
                if seg.rule and segment_matches(seg.rule, c):
                    memberships.append(ContactSegment(contact=c, segment=seg, source="rule"))
            if c.custom_attributes.get("plan") == "enterprise" and rng.random() < 0.4:
                memberships.append(ContactSegment(contact=c, segment=segs["Enterprise"], source="manual"))
            if rng.random() < 0.2:
                memberships.append(ContactSegment(contact=c, segment=segs["Newsletter"], source="manual"))
        ContactSegment.objects.bulk_create(memberships, batch_size=5000)

        # History: closed conversations, assigned, 2 messages each.
        history = []
        for c in contacts:
            for _ in range(rng.choices(range(7), weights=[15, 25, 25, 15, 10, 6, 4])[0]):
                closed = now - timedelta(seconds=rng.randint(3600, 180 * 86400))
                history.append(Conversation(
                    inbox=rng.choice(contact_inboxes[c.pk]), contact=c, status="closed",
                    priority=rng.choices([0, 1, 2, 3], weights=[10, 75, 12, 3])[0],
                    assignee=rng.choice(users), subject="", last_message_at=closed, closed_at=closed,
                    last_customer_message_at=closed, last_message_preview="Thanks, that solved it."))
        history = Conversation.objects.bulk_create(history, batch_size=5000)
        messages = []
        for conv in history:
            messages.append(Message(conversation=conv, inbox_id=conv.inbox_id, direction="in", sender_type="contact",
                                    body=rng.choice(BODIES["en"]), delivery_status="received"))
            messages.append(Message(conversation=conv, inbox_id=conv.inbox_id, direction="out", sender_type="agent",
                                    sender_user_id=conv.assignee_id, body="Thanks, that solved it.",
                                    delivery_status="delivered"))
        Message.objects.bulk_create(messages, batch_size=5000)

        # Open load: every agent already works some conversations (under the limits), each on its own contact.
        chat_inboxes = {t.pk: [ib for ib in inboxes if ib.kind == "webchat" and ib.pk in
                               {x.pk for x in t.inboxes.all()}] for t in teams}
        async_inboxes = {t.pk: [ib for ib in inboxes if ib.kind != "webchat" and ib.pk in
                                {x.pk for x in t.inboxes.all()}] for t in teams}
        load_contacts, open_convs = [], []
        api_inbox = inboxes[9]
        open_high = rng.sample(contacts, N_CONTACTS * 3 // 100)
        async_used = {a.pk: 0 for a in agents}
        for c in open_high:  # the "Open issue owner" rule: an open high-priority issue in the API inbox
            agent = rng.choice(agents)
            async_used[agent.pk] += 1
            open_convs.append(Conversation(inbox=api_inbox, contact=c, status="open", priority=2,
                                           assignee_id=agent.user_id, last_message_at=now, waiting_since=None,
                                           last_message_preview="Still broken"))
        for agent in agents:
            mine_chat = [ib for t in agent_teams[agent.pk] for ib in chat_inboxes[t.pk]] or [inboxes[0]]
            mine_async = [ib for t in agent_teams[agent.pk] for ib in async_inboxes[t.pk]] or [inboxes[3]]
            plan = [rng.choice(mine_chat) for _ in range(rng.randint(0, 2))]
            plan += [rng.choice(mine_async) for _ in range(min(rng.randint(0, 5), ASYNC_LIMIT - 2 - async_used[agent.pk]))]
            for inbox in plan:
                contact = Contact(name=f"Load {len(load_contacts)}", email=f"load{len(load_contacts)}@example.com")
                load_contacts.append(contact)
                open_convs.append(Conversation(inbox=inbox, contact=contact, status="open", priority=1,
                                               assignee_id=agent.user_id, last_message_at=now,
                                               last_customer_message_at=now, last_message_preview="Working on it"))
        Contact.objects.bulk_create(load_contacts, batch_size=2000)
        for conv in open_convs:
            conv.contact_id = conv.contact.pk
        Conversation.objects.bulk_create(open_convs, batch_size=5000)
        with connection.cursor() as cursor:
            cursor.execute("UPDATE conversations_conversation SET created_at = COALESCE(closed_at, now()) "
                           "- interval '25 minutes', updated_at = COALESCE(closed_at, now())")
            cursor.execute("UPDATE conversations_message m SET created_at = c.created_at FROM "
                           "conversations_conversation c WHERE c.id = m.conversation_id")

        info = {
            "version": SEED_VERSION,
            "inboxes": [ib.pk for ib in inboxes],
            "max_contact_id": max(c.pk for c in load_contacts),
            "returning_contacts": [contacts[0].pk, contacts[-1].pk],
            "max_conversation_id": Conversation.objects.order_by("-id").values_list("id", flat=True).first(),
            "max_realtime_event_id": RealtimeEvent.objects.order_by("-id").values_list("id", flat=True).first() or 0,
            "agents": N_AGENTS, "rules": RoutingRule.objects.filter(is_active=True).count(),
        }
        marker_inbox = inboxes[0]
        marker_inbox.settings = {**marker_inbox.settings, "bench_routing": info}
        marker_inbox.save(update_fields=["settings"])
    with connection.cursor() as cursor:
        cursor.execute("ANALYZE")
    return info


_CHILDREN_SQL = """
SELECT c.conrelid::regclass::text, a.attname, af.attname
  FROM pg_constraint c
  JOIN pg_attribute a ON a.attrelid = c.conrelid AND a.attnum = c.conkey[1]
  JOIN pg_attribute af ON af.attrelid = c.confrelid AND af.attnum = c.confkey[1]
 WHERE c.contype = 'f' AND c.confrelid = %s::regclass
"""


def _purge(cursor, table: str, where: str) -> int:
    """DELETE FROM table WHERE <where>, rows that reference them first (found in the catalog, so that models
    added by others since the seed are handled even before their Django migration exists)."""
    cursor.execute(_CHILDREN_SQL, [table])
    for child, column, parent_column in cursor.fetchall():
        selected = f'SELECT "{parent_column}" FROM {table} WHERE {where}'
        if child == table:  # self-reference (merged_into): cut it
            cursor.execute(f'UPDATE {table} SET "{column}" = NULL WHERE "{column}" IN ({selected})')
        else:
            _purge(cursor, child, f'"{column}" IN ({selected})')
    cursor.execute(f"DELETE FROM {table} WHERE {where}")
    return cursor.rowcount


def reset() -> dict:
    """Delete every conversation, contact, decision, queue entry and replay event made after the seed."""
    from django.db import connection, transaction

    info = marker()
    if not info:
        raise SystemExit("not seeded")
    with transaction.atomic(), connection.cursor() as cursor:
        _purge(cursor, "routing_queueentry", "true")
        deleted = _purge(cursor, "conversations_conversation", f"id > {int(info['max_conversation_id'])}")
        _purge(cursor, "conversations_contact", f"id > {int(info['max_contact_id'])}")
        _purge(cursor, "omnichannel_realtimeevent", f"id > {int(info['max_realtime_event_id'])}")
    with connection.cursor() as cursor:
        # VACUUM, not only ANALYZE: every step deletes what it made, and the dead rows (several times the live
        # ones after a few runs; autovacuum lags) slowed the next run's scans and inflated its figures.
        cursor.execute("VACUUM (ANALYZE) conversations_conversation, conversations_message, routing_routingdecision,"
                       " conversations_contact, conversations_contactidentity, omnichannel_realtimeevent,"
                       " omnichannel_realtimestream, conversations_conversationevent, routing_queueentry,"
                       " routing_agentprofile, conversations_conversation_tags")
    return {"deleted_conversations": deleted}


class Arrivals:
    """Deterministic new-conversation specs; process `proc` of `procs` gets every procs-th arrival."""

    def __init__(self, *, salt: str, proc: int = 0, procs: int = 1, seed: int = SEED) -> None:
        from conversations import channels
        from conversations.actions import identity_scope
        from conversations.models import ContactIdentity, Inbox

        info = marker()
        if not info:
            raise SystemExit("not seeded")
        self.inboxes = {ib.pk: ib for ib in Inbox.objects.filter(pk__in=info["inboxes"])}
        self.order = [self.inboxes[pk] for pk in info["inboxes"]]
        self.shares = [s for _, _, s in INBOXES]
        lo, hi = info["returning_contacts"]
        self.pools: dict[int, list[str]] = {}
        for inbox in self.order:
            if inbox.kind == "api":
                self.pools[inbox.pk] = []
                continue
            values = list(ContactIdentity.objects.filter(
                kind=channels.for_inbox(inbox).identity, scope=identity_scope(inbox), contact_id__gte=lo,
                contact_id__lte=hi).order_by("id").values_list("value", flat=True))
            random.Random(seed + inbox.pk).shuffle(values)
            self.pools[inbox.pk] = values[proc::procs]
        self.used = {pk: 0 for pk in self.pools}
        self.rng = random.Random(f"{seed}-{salt}-{proc}")
        self.salt, self.proc, self.count = salt, proc, 0

    def next(self) -> dict:
        rng = self.rng
        inbox = rng.choices(self.order, weights=self.shares)[0]
        self.count += 1
        pool = self.pools[inbox.pk]
        returning = rng.random() < 0.55 and self.used[inbox.pk] < len(pool)
        language = _pick(rng, ARRIVAL_LANGUAGES)
        body = rng.choice(BODIES[language])
        if rng.random() < 0.01:
            body = rng.choice(ESCALATION_BODIES)
        body = f"{body} Order #{rng.randint(100000, 999999)}."
        spec = {"inbox_id": inbox.pk, "body": body, "subject": "", "contact_name": "", "contact_email": "",
                "contact_phone": "", "meta": None}
        if returning:
            spec["source_id"] = pool[self.used[inbox.pk]]
            self.used[inbox.pk] += 1
        else:
            n = f"{self.salt}-{self.proc}-{self.count}"
            number = f"{self.proc}{self.count:08d}"  # unique within a run (reset deletes new contacts)
            spec["source_id"] = {"email": f"new-{n}@example.net", "sms": f"+1777{number}",
                                 "whatsapp": f"+4477{number}"}.get(inbox.kind, f"new-{n}")
            spec["contact_name"] = f"New {n}"
            if inbox.kind == "email":
                spec["contact_email"] = spec["source_id"]
        if inbox.kind == "email":
            spec["subject"] = rng.choice(["Order question", "Problem with my order", "Invoice", "Return", "Hello"])
        if inbox.kind == "webchat":
            country = _pick(rng, COUNTRIES)
            path = rng.choices(["/", "/products/tents", "/checkout", "/help/returns", "/partners/apply",
                                "/products/jackets?utm_campaign=black-friday-2026"], weights=[40, 25, 8, 15, 3, 9])[0]
            visitor = {"page_url": f"https://shop.example{path}", "language": f"{language}-{country}",
                       "country": country}
            meta = {"visitor": visitor}
            if rng.random() < 0.5:
                prechat = {"name": "Visitor", "department": _pick(rng, DEPARTMENTS)}
                if rng.random() < 0.3:
                    prechat["country"] = country
                    if country == "US":
                        prechat["state"] = rng.choice(US_NORTHEAST + US_WEST + US_OTHER)
                        if rng.random() < 0.5:
                            prechat["zip"] = f"{rng.randint(1000, 99999):05d}"
                if rng.random() < 0.2:
                    prechat["language"] = language
                meta["prechat"] = prechat
            spec["meta"] = meta
        elif inbox.kind == "messenger" and rng.random() < 0.15:
            spec["meta"] = {"post_type": "public"}
        return spec


def _main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("command", choices=["seed", "reset", "info"])
    args = parser.parse_args()
    setup_django()
    if args.command == "seed":
        out = seed()
    elif args.command == "reset":
        out = reset()
    else:
        out = marker() or {}
    print(json.dumps(out))


if __name__ == "__main__":
    _main()
