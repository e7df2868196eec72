"""Load demo data (idempotent): agents, teams, inboxes, segments, canned messages, conversations."""

from __future__ import annotations

from django.contrib.auth import get_user_model
from django.core.management.base import BaseCommand
from django.db import transaction

from agents.actions import do_set_agent_role
from agents.models import AgentProfile, Skill, Team
from campaigns.models import WidgetConfig
from conversations import actions
from conversations.models import CannedMessage, ChannelKind, ContactIdentity, Inbox, Segment
from routing.models import RoutingRule
from sla.models import BusinessCalendar, SlaPolicy

DEMO_PASSWORD = "demo-pass-2026"  # noqa: S105 - printed demo login, DEMO_MODE only

AGENTS = [
    ("admin", "Ada Admin", AgentProfile.Role.ADMIN, ["Support", "Sales"]),
    ("bob", "Bob Supervisor", AgentProfile.Role.SUPERVISOR, ["Support"]),
    ("alice", "Alice Agent", AgentProfile.Role.AGENT, ["Support"]),
    ("carol", "Carol Sales", AgentProfile.Role.AGENT, ["Sales"]),
]


class Command(BaseCommand):
    help = "Load demo data (safe to run twice)."

    def handle(self, *args, **options):
        User = get_user_model()
        if User.objects.filter(username="alice").exists():
            self.stdout.write("Demo data already loaded.")
            return
        with transaction.atomic():
            self._seed(User)
        self.stdout.write(self.style.SUCCESS("Demo data loaded."))

    def _seed(self, User):
        web = Inbox.objects.create(name="Website (demo shop)", kind=ChannelKind.API,
                                   settings={"demo": True, "delivery": "poll"})
        email = Inbox.objects.create(name="support@acme.test", kind=ChannelKind.EMAIL)
        sms = Inbox.objects.create(name="SMS +1 555 0100", kind=ChannelKind.SMS)
        shop = Inbox.objects.create(name="Shop backend (API)", kind=ChannelKind.API, settings={"delivery": "poll"})
        sales_inbox = Inbox.objects.create(name="sales@acme.test", kind=ChannelKind.EMAIL)
        chat = Inbox.objects.create(name="Website chat", kind=ChannelKind.WEBCHAT, settings={"demo": True})
        WidgetConfig.objects.create(inbox=chat, title="Acme Outdoor support",
                                    greeting="Hi! Questions about gear or an order? We're here.")
        support = Team.objects.create(name="Support")
        support.inboxes.set([web, email, sms, shop, chat])
        sales = Team.objects.create(name="Sales")
        sales.inboxes.set([sales_inbox, web, chat])
        teams = {"Support": support, "Sales": sales}
        for skill in ("English", "Spanish", "Billing", "Public Facebook posts"):
            Skill.objects.create(name=skill)
        users = {}
        for username, full_name, role, team_names in AGENTS:
            first, last = full_name.split(" ", 1)
            user = User.objects.create_user(username=username, password=DEMO_PASSWORD, first_name=first,
                                            last_name=last, email=f"{username}@acme.test",
                                            is_superuser=role == AgentProfile.Role.ADMIN)
            agent = AgentProfile.objects.create(user=user, display_name=full_name, languages=["en"])
            agent.teams.set([teams[t] for t in team_names])
            do_set_agent_role(agent=agent, role=role)
            users[username] = user
        support.lead = users["bob"]
        support.save(update_fields=["lead"])
        Segment.objects.create(name="VIP spend tier 5", label="VIP-Spend 5", color="#b45309", priority_level=5,
                               account_manager=users["carol"],
                               rule={"match": "all", "conditions": [
                                   {"field": "attributes.spend_tier", "op": "gte", "value": 5}]})
        upset = Segment.objects.create(name="Upset VIP", label="VIP-Upset-2", color="#b42318", priority_level=4)
        RoutingRule.objects.create(name="VIP customers to their account manager", position=10,
                                   target="account_manager", secondary_target="team", secondary_team=support,
                                   set_priority=2, conditions=[{"field": "vip_level", "op": "gte", "value": 5}])
        RoutingRule.objects.create(name="Sales questions from the website", position=20, target="team",
                                   target_team=sales, conditions=[
                                       {"field": "prechat.department", "op": "eq", "value": "Sales"}])
        RoutingRule.objects.create(name="Spanish speakers", position=30, target="skill",
                                   target_skill=Skill.objects.get(name="Spanish"),
                                   secondary_target="team", secondary_team=support,
                                   conditions=[{"field": "language", "op": "eq", "value": "es"}])
        office = BusinessCalendar.objects.create(name="Office hours", timezone="Europe/Paris", intervals={
            d: [["09:00", "18:00"]] for d in ("mon", "tue", "wed", "thu", "fri")})
        SlaPolicy.objects.create(name="VIP customers", position=1, conditions=[
            {"field": "vip_level", "op": "gte", "value": 5}], targets={
            "first_response": {"low": 30, "normal": 15, "high": 10, "urgent": 5}, "resolution": {"normal": 480}},
            escalations={"warning": [{"action": "notify", "to": "assignee"}],
                         "breach": [{"action": "raise_priority"}, {"action": "notify", "to": "team_lead"}]})
        SlaPolicy.objects.create(name="Live chat", position=2, calendar=office,
                                 business_time_metrics=["first_response"],
                                 conditions=[{"field": "channel", "op": "eq", "value": "webchat"}],
                                 targets={"first_response": {"low": 1, "normal": 1, "high": 1, "urgent": 1}})
        SlaPolicy.objects.create(name="SMS and social", position=3, conditions=[
            {"field": "channel", "op": "in", "value": ["sms", "whatsapp", "messenger", "instagram", "x"]}],
            targets={"first_response": {"low": 120, "normal": 60, "high": 30, "urgent": 15},
                     "next_response": {"normal": 60}})
        SlaPolicy.objects.create(name="Email", position=4, pause_statuses=["pending", "on_hold"],
                                 conditions=[{"field": "channel", "op": "in", "value": ["email", "api"]}],
                                 targets={"first_response": {"low": 2880, "normal": 1440, "high": 240, "urgent": 60},
                                          "next_response": {"normal": 480}, "resolution": {"normal": 4320}},
                                 escalations={"breach": [{"action": "add_tag", "tag": "sla-breached"}]})
        CannedMessage.objects.create(shortcut="hello", title="Greeting",
                                     body="Hi {{contact.first_name}}, thanks for reaching out! "
                                          "I'm {{agent.name}} and I'll help you today.")
        CannedMessage.objects.create(shortcut="refund", title="Refund policy",
                                     body="Refunds are processed within 5 business days to the original "
                                          "payment method.")
        CannedMessage.objects.create(shortcut="bye", title="Closing",
                                     body="Glad I could help, {{contact.first_name}}. Have a great day!")

        r = actions.do_receive_inbound_message(
            inbox=email, source_id="maria@example.com", contact_name="María García",
            contact_email="maria@example.com", subject="Order #1042 arrived damaged",
            body="Hello, my tent arrived with a torn rain fly. Can you send a replacement?")
        maria = r.message.conversation.contact
        actions.do_update_contact(actor=None, contact=maria, custom_attributes={"spend_tier": 5, "plan": "gold"})
        actions.do_receive_inbound_message(inbox=sms, source_id="+15550101234", contact_name="María García",
                                           body="Hi, it's María again: any update on my replacement?")
        sms_contact = ContactIdentity.objects.get(value="+15550101234").contact
        actions.do_merge_contacts(actor=None, source=sms_contact, target=maria)
        actions.do_add_note(actor=users["alice"], conversation=r.message.conversation,
                            body="Customer is a gold-plan VIP. Offer express shipping on the replacement.")
        actions.do_change_priority(actor=None, conversation=r.message.conversation, priority=2)

        r2 = actions.do_receive_inbound_message(inbox=shop, source_id="cust-7731", contact_name="Tom Becker",
                                                contact_email="tom@example.com",
                                                body="Where is my order 7731? Tracking shows nothing for 4 days.")
        actions.do_set_tags(actor=None, conversation=r2.message.conversation, names=["shipping", "order-status"])
        r3 = actions.do_receive_inbound_message(inbox=email, source_id="li.wei@example.com", contact_name="Li Wei",
                                                contact_email="li.wei@example.com", subject="Invoice copy",
                                                body="Could you send me a copy of my last invoice?")
        actions.do_set_contact_segments(actor=None, contact=r3.message.conversation.contact,
                                        segment_ids=[upset.id])
        actions.do_send_agent_reply(actor=users["alice"], conversation=r2.message.conversation,
                                    body="Hi Tom, I'm checking with the carrier now and will update you shortly.")
        actions.do_receive_inbound_message(inbox=sales_inbox, source_id="procurement@bigco.example",
                                           contact_name="BigCo Procurement", subject="Bulk pricing",
                                           body="We'd like a quote for 200 backpacks.")
