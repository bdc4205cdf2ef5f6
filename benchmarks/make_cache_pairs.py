"""Build the semantic cache's labelled pair set: src/infopt/serve/cache/data/pairs.jsonl (seeded, reproducible).

A family is one support-bot intent. It has clusters of prompts that mean the same (pairs inside a cluster must
hit: kind `paraphrase`, or `number-format` when the number is written another way); prompts in different
clusters of a family differ in one fact (negation, number, entity, ...: the family's kind) and must not hit.
`unrelated` pairs join two families of the same domain. 30% of the families of each kind are held out, so held-out
pairs share no template with calibration pairs.

    python benchmarks/make_cache_pairs.py [--seed 0] [--out PATH]
"""

from __future__ import annotations

import argparse
import itertools
import json
import random
from collections import Counter
from pathlib import Path

OUT = Path(__file__).resolve().parents[1] / "src/infopt/serve/cache/data/pairs.jsonl"
POS_PER_FAMILY = 24
NEG_PER_FAMILY = 24
UNRELATED_PER_FAMILY = 6
HELDOUT_SHARE = 0.3


# ---- families: hand-written (support bot / chat assistant prompts) ------------------------------------------------
FAMILIES: list[dict] = [
    # opposite actions
    {"name": "2fa-toggle", "domain": "account", "kind": "opposite-action",
     "forms": ["How do I {x} two-factor authentication?", "How can I {x} 2FA on my account?",
               "What are the steps to {x} two-factor authentication?", "{X} 2FA - how?",
               "I want to {x} two-step verification, how do I do that?"],
     "values": [["enable", "turn on", "activate"], ["disable", "turn off", "deactivate"]]},
    {"name": "card-add-remove", "domain": "billing", "kind": "opposite-action",
     "forms": ["How do I {x} a credit card on my account?", "Where can I {x} a payment card?",
               "I need to {x} a card from my billing settings", "Steps to {x} a credit card please"],
     "values": [["add"], ["remove", "delete"]]},
    {"name": "plan-up-down", "domain": "billing", "kind": "opposite-action",
     "forms": ["How do I {x} my subscription plan?", "Can I {x} my plan in the middle of the month?",
               "I'd like to {x} my plan", "What happens to my bill if I {x} my plan?"],
     "values": [["upgrade"], ["downgrade"]]},
    {"name": "notif-toggle", "domain": "tech", "kind": "opposite-action",
     "forms": ["How do I {x} email notifications?", "Where is the setting to {x} notification emails?",
               "Can you tell me how to {x} the email alerts?", "I want to {x} notifications by email"],
     "values": [["turn on", "enable"], ["turn off", "disable"]]},
    {"name": "limit-inc-dec", "domain": "billing", "kind": "opposite-action",
     "forms": ["How can I {x} my spending limit?", "Is it possible to {x} the spending limit on my card?",
               "I want to {x} my card's spending limit", "Who do I contact to {x} my spending limit?"],
     "values": [["increase", "raise"], ["decrease", "reduce", "lower"]]},
    {"name": "upload-download", "domain": "tech", "kind": "opposite-action",
     "forms": ["Why is it so slow to {x} files?", "{X} speed is really slow, what can I do?",
               "How can I make it faster to {x} large files?", "Tips to speed up when I {x} big files"],
     "values": [["upload"], ["download"]]},
    {"name": "lock-unlock", "domain": "account", "kind": "opposite-action",
     "forms": ["How do I {x} my account?", "What is the way to {x} my user account?", "Please help me {x} my account",
               "Can I {x} my account from the app?"],
     "values": [["lock"], ["unlock"]]},
    {"name": "import-export", "domain": "tech", "kind": "opposite-action",
     "forms": ["How do I {x} my contacts as a CSV file?", "Can I {x} contacts in CSV format?",
               "What's the way to {x} my contact list to CSV?", "Is there a CSV {x} for contacts?"],
     "values": [["import"], ["export"]]},
    # negation
    {"name": "refund-received", "domain": "billing", "kind": "negation", "clusters": [
        ["I received my refund, when will it show on my statement?",
         "My refund arrived, when will it appear on my statement?",
         "I got the refund, how long until it shows up on my bank statement?"],
        ["I haven't received my refund, when will it show on my statement?",
         "My refund has not arrived, when will it appear on my statement?",
         "I didn't get the refund, how long until it shows up on my bank statement?"]]},
    {"name": "app-working", "domain": "tech", "kind": "negation", "clusters": [
        ["Why does the app work on wifi?", "How come the app works when I'm on wifi?",
         "The app works on wifi, why is that?"],
        ["Why does the app not work on wifi?", "How come the app doesn't work when I'm on wifi?",
         "The app won't work on wifi, why is that?", "Why doesn't the app work on wifi?"]]},
    {"name": "plan-includes", "domain": "billing", "kind": "negation", "clusters": [
        ["Does the basic plan include phone support?", "Is phone support included in the basic plan?",
         "Do I get phone support with the basic plan?"],
        ["Does the basic plan not include phone support?", "Is phone support not included in the basic plan?",
         "Why don't I get phone support with the basic plan?"]]},
    {"name": "can-cancel", "domain": "shipping", "kind": "negation", "clusters": [
        ["Can I cancel an order after it has shipped?", "Is it possible to cancel my order once it shipped?",
         "Am I able to cancel an order that was already shipped?"],
        ["Why can't I cancel an order after it has shipped?",
         "Why is it not possible to cancel my order once it shipped?",
         "Why am I unable to cancel an order that was already shipped?"]]},
    {"name": "email-verified", "domain": "account", "kind": "negation", "clusters": [
        ["My email address is verified, what is the next step?", "I verified my email, what should I do next?",
         "Email is confirmed, what do I do now?"],
        ["My email address is not verified, what is the next step?",
         "I never verified my email, what should I do next?",
         "Email isn't confirmed, what do I do now?"]]},
    {"name": "charged-twice", "domain": "billing", "kind": "negation", "clusters": [
        ["I was charged for my order, is that normal?", "My card was charged for the order, is this expected?",
         "You charged me for the order, is that right?"],
        ["I was not charged for my order, is that normal?", "My card wasn't charged for the order, is this expected?",
         "You never charged me for the order, is that right?"]]},
    # numbers
    {"name": "seats", "domain": "billing", "kind": "number",
     "forms": ["Can I add {x} more users to my team plan?", "Is it possible to add {x} extra seats to the team plan?",
               "How much does it cost to add {x} users to my team?", "I need {x} additional seats on my team plan"],
     "values": [["2", "two"], ["3", "three"], ["5", "five"], ["10", "ten"]]},
    {"name": "free-shipping", "domain": "shipping", "kind": "number",
     "forms": ["Is shipping free on orders over ${x}?", "Do you offer free delivery for orders above ${x}?",
               "Do orders over ${x} ship for free?"],
     "values": [["50", "fifty"], ["100", "one hundred"], ["1,000", "1000", "one thousand"]]},
    {"name": "return-days", "domain": "shipping", "kind": "number",
     "forms": ["Can I return an item {x} days after delivery?", "Is a return allowed {x} days after it was delivered?",
               "Will you accept a return {x} days after delivery?"],
     "values": [["14", "fourteen"], ["30", "thirty"], ["45", "forty-five", "forty five"], ["60", "sixty"]]},
    {"name": "pickup-time", "domain": "shipping", "kind": "number",
     "forms": ["Can I pick up my order at {x} today?", "Is pickup possible at {x} today?",
               "Could I collect my order at {x} today?"],
     "values": [["5 pm", "5pm", "17:00"], ["6 pm", "18:00", "6pm"], ["9 am", "9:00", "9am"], ["noon", "12 pm"]]},
    {"name": "split-payments", "domain": "billing", "kind": "number",
     "forms": ["Can I pay in {x} installments?", "Is it possible to split the payment into {x} installments?",
               "Do you allow paying in {x} monthly installments?"],
     "values": [["3", "three"], ["4", "four"], ["6", "six"], ["12", "twelve"]]},
    {"name": "room-guests", "domain": "travel", "kind": "number",
     "forms": ["Can a standard room fit {x} guests?", "Is a standard room big enough for {x} people?",
               "How much is a standard room for {x} guests?"],
     "values": [["2", "two"], ["3", "three"], ["4", "four"]]},
    {"name": "storage-tier", "domain": "tech", "kind": "unit",
     "forms": ["Is {x} of storage included in the free plan?", "Does the free plan come with {x} of storage?",
               "Do free accounts get {x} of storage?"],
     "values": [["5 GB", "5 gigabytes", "five GB"], ["5 MB", "5 megabytes"], ["5 TB", "5 terabytes"]]},
    {"name": "distance", "domain": "travel", "kind": "unit",
     "forms": ["Is the hotel within {x} of the airport?", "Is the hotel less than {x} from the airport?",
               "Is the airport within {x} of the hotel?"],
     "values": [["10 km", "10 kilometers", "ten kilometres"], ["10 miles", "ten miles"]]},
    {"name": "price-currency", "domain": "billing", "kind": "unit",
     "forms": ["Is the annual plan {x}?", "Does the yearly plan cost {x}?", "Is the price of the annual plan {x}?"],
     "values": [["99 dollars", "$99", "99 USD"], ["99 euros", "€99", "99 EUR"], ["99 pounds", "£99"]]},
    {"name": "trial-length", "domain": "billing", "kind": "unit",
     "forms": ["Does the free trial last {x}?", "Is the free trial {x} long?", "Do I get a {x} free trial?"],
     "values": [["7 days", "seven days"], ["7 weeks", "seven weeks"], ["7 months", "seven months"]]},
    # versions
    {"name": "sdk-version", "domain": "tech", "kind": "version",
     "forms": ["Is SDK {x} compatible with Python 3.11?", "Does version {x} of the SDK support Python 3.11?",
               "Can I use the SDK {x} with Python 3.11?"],
     "values": [["v2.1", "2.1"], ["v2.2", "2.2"], ["v3.0", "3.0"]]},
    {"name": "app-release", "domain": "tech", "kind": "version",
     "forms": ["What changed in release {x}?", "What's new in version {x}?", "Where are the release notes for {x}?"],
     "values": [["1.4.2", "v1.4.2"], ["1.4.3", "v1.4.3"], ["1.5.0", "v1.5.0"]]},
    # dates
    {"name": "store-hours-day", "domain": "shipping", "kind": "date",
     "forms": ["Is the store open on {x}?", "What are your opening hours on {x}?", "Are you open on {x}?"],
     "values": [["Sunday", "sunday"], ["Saturday"], ["Monday"]]},
    {"name": "holiday-delivery", "domain": "shipping", "kind": "date",
     "forms": ["Will my package be delivered {x}?", "Is delivery possible {x}?", "Can you deliver my order {x}?"],
     "values": [["tomorrow"], ["today"], ["next week"], ["this weekend"]]},
    {"name": "report-year", "domain": "billing", "kind": "date",
     "forms": ["Where can I download my invoices for {x}?", "How do I get the {x} invoices?",
               "I need all invoices from {x}, where are they?"],
     "values": [["2023"], ["2024"], ["2022"]]},
    {"name": "event-month", "domain": "travel", "kind": "date",
     "forms": ["Are flights cheaper in {x}?", "Is it cheaper to fly in {x}?", "Do flight prices drop in {x}?"],
     "values": [["March"], ["July"], ["December"]]},
    # entities
    {"name": "ship-country", "domain": "shipping", "kind": "entity",
     "forms": ["Do you ship to {x}?", "Can I get my order delivered to {x}?",
               "Is international shipping to {x} available?",
               "How long does shipping to {x} take?"],
     "values": [["Canada"], ["Mexico"], ["Germany"], ["Australia"]]},
    {"name": "weather-city", "domain": "travel", "kind": "entity",
     "forms": ["What's the weather like in {x} in spring?", "How is the weather in {x} during spring?",
               "Is spring a good time to visit {x} for the weather?"],
     "values": [["Paris"], ["Prague"], ["Vienna"], ["Lisbon"]]},
    {"name": "hotel-city", "domain": "travel", "kind": "entity",
     "forms": ["Recommend a family hotel in {x}", "What's a good hotel for families in {x}?",
               "Which hotels in {x} are good for kids?"],
     "values": [["Barcelona", "Barcelna"], ["Valencia"], ["Seville"]]},
    {"name": "integration", "domain": "tech", "kind": "entity",
     "forms": ["How do I connect the app to {x}?", "Is there an integration with {x}?", "Can I sync my data with {x}?"],
     "values": [["Slack"], ["Salesforce"], ["Zendesk"], ["HubSpot"]]},
    {"name": "pay-method", "domain": "billing", "kind": "entity",
     "forms": ["Can I pay with {x}?", "Do you accept {x}?", "Is {x} an accepted payment method?"],
     "values": [["PayPal"], ["Visa"], ["Amex"], ["Klarna"]]},
    {"name": "os-install", "domain": "tech", "kind": "entity",
     "forms": ["How do I install the desktop app on {x}?", "Installing the desktop client on {x}, how?",
               "What are the install steps for the desktop app on {x}?"],
     "values": [["Windows"], ["Linux"], ["macOS"]]},
    {"name": "language", "domain": "account", "kind": "entity",
     "forms": ["How do I change the app language to {x}?", "Can I switch the interface to {x}?",
               "Is the app available in {x}?"],
     "values": [["French"], ["Spanish"], ["German"], ["Japanese"]]},
    # scope
    {"name": "delete-messages", "domain": "account", "kind": "scope", "clusters": [
        ["How do I delete all my messages?", "How can I delete every message in my inbox?",
         "Is there a way to delete all of my messages at once?"],
        ["How do I delete a single message?", "How can I delete one message in my inbox?",
         "Is there a way to delete just one message?"]]},
    {"name": "sales-year", "domain": "billing", "kind": "scope", "clusters": [
        ["What was our total revenue?", "Show me our total revenue", "How much total revenue did we make?"],
        ["What was our total revenue in 2023?", "Show me our total revenue for 2023",
         "How much total revenue did we make in 2023?"]]},
    {"name": "export-users", "domain": "tech", "kind": "scope", "clusters": [
        ["How do I export the data of every user?", "Can I export all users' data?", "Export data for all users, how?"],
        ["How do I export the data of one user?", "Can I export a single user's data?",
         "Export data for a specific user, how?"]]},
    {"name": "weather-scope", "domain": "travel", "kind": "scope", "clusters": [
        ["What is the weather going to be like this week?", "How's the weather looking for this week?",
         "Weather forecast for this week?"],
        ["What is the weather going to be like this week in London?",
         "How's the weather looking for this week in London?",
         "Weather forecast for this week in London?"]]},
    {"name": "reset-devices", "domain": "account", "kind": "scope", "clusters": [
        ["How do I sign out of all devices?", "Can I log out everywhere at once on every device?",
         "Sign me out on all my devices"],
        ["How do I sign out of one device?", "Can I log out on a single device only?",
         "Sign me out on one specific device"]]},
    # paraphrase-only families (support "unrelated" pairs and more positives)
    {"name": "password-reset", "domain": "account", "kind": "paraphrase", "clusters": [
        ["How do I reset my password?", "I forgot my password, how can I reset it?",
         "What's the way to reset my password?", "Can you help me reset my password?",
         "password reset steps please", "I can't remember my password, what do I do?"]]},
    {"name": "change-email", "domain": "account", "kind": "paraphrase", "clusters": [
        ["How do I change the email address on my account?", "Can I update my account's email address?",
         "I want to use a different email for my account", "Where do I edit my email address?"]]},
    {"name": "track-order", "domain": "shipping", "kind": "paraphrase", "clusters": [
        ["Where is my order?", "How can I track my package?", "What's the status of my delivery?",
         "Can you tell me where my parcel is?", "Track my order please"]]},
    {"name": "invoice-copy", "domain": "billing", "kind": "paraphrase", "clusters": [
        ["How do I get a copy of my invoice?", "Where can I find my invoice?", "Can you send me my invoice again?",
         "I need a copy of my bill"]]},
    {"name": "speed-tips", "domain": "tech", "kind": "paraphrase", "clusters": [
        ["Why is the app so slow?", "The app is really laggy, what can I do?", "How can I make the app faster?",
         "The app takes forever to load"]]},
    {"name": "baggage", "domain": "travel", "kind": "paraphrase", "clusters": [
        ["How much luggage can I bring on the flight?", "What is the baggage allowance?",
         "How many bags am I allowed to take on the plane?", "What's the luggage limit for my flight?"]]},
    {"name": "checkin-time", "domain": "travel", "kind": "paraphrase", "clusters": [
        ["What time is hotel check-in?", "When can I check in to the hotel?", "What's the check-in time at the hotel?",
         "How early can I check into my room?"]]},
    {"name": "contact-support", "domain": "account", "kind": "paraphrase", "clusters": [
        ["How do I contact customer support?", "How can I reach your support team?", "I need to talk to support",
         "What is the best way to get in touch with customer service?"]]},
]


def clusters(family: dict) -> list[list[str]]:
    """Expand a family: explicit `clusters`, or `forms` x `values` (each value: its equivalent surfaces)."""
    if "clusters" in family:
        return [list(c) for c in family["clusters"]]
    return [[f.format(x=s, X=s[:1].upper() + s[1:]) for f in family["forms"] for s in value]
            for value in family["values"]]


def _surface_kind(family: dict, a: str, b: str) -> str:
    """`number-format` / `typo` when the two prompts write the same value differently, else `paraphrase`."""
    for value in family.get("values", []):
        hits_a = {s for s in value if s in a}
        hits_b = {s for s in value if s in b}
        if len(value) > 1 and hits_a and hits_b and hits_a != hits_b:
            return "typo" if family["kind"] == "entity" else "number-format"
    return "paraphrase"


def family_pairs(family: dict, rng: random.Random) -> list[dict]:
    cl = clusters(family)
    pos = [(a, b) for c in cl for a, b in itertools.combinations(sorted(set(c)), 2)]
    neg = [(a, b) for c1, c2 in itertools.combinations(cl, 2) for a in sorted(set(c1)) for b in sorted(set(c2))]
    rows = [{"a": a, "b": b, "same": True, "kind": _surface_kind(family, a, b)}
            for a, b in rng.sample(pos, min(POS_PER_FAMILY, len(pos)))]
    rows += [{"a": a, "b": b, "same": False, "kind": family["kind"]}
             for a, b in rng.sample(neg, min(NEG_PER_FAMILY, len(neg)))]
    for r in rows:
        if rng.random() < 0.5:
            r["a"], r["b"] = r["b"], r["a"]
    return rows


def build(seed: int = 0) -> list[dict]:
    rng = random.Random(seed)
    by_kind: dict[str, list[dict]] = {}
    for fam in FAMILIES:
        by_kind.setdefault(fam["kind"], []).append(fam)
    heldout: set[str] = set()
    for fams in by_kind.values():
        names = sorted(f["name"] for f in fams)
        heldout |= set(rng.sample(names, max(1, round(HELDOUT_SHARE * len(names))) if len(names) > 1 else 0))
    rows: list[dict] = []
    for fam in FAMILIES:
        split = "heldout" if fam["name"] in heldout else "calibration"
        for r in family_pairs(fam, rng):
            rows.append(r | {"split": split, "family": fam["name"]})
    for split in ("calibration", "heldout"):  # unrelated: two families of one domain, same split
        fams = [f for f in FAMILIES if (f["name"] in heldout) == (split == "heldout")]
        for f1, f2 in itertools.combinations(fams, 2):
            if f1["domain"] != f2["domain"]:
                continue
            c1, c2 = clusters(f1), clusters(f2)
            for _ in range(UNRELATED_PER_FAMILY // 2):
                a, b = rng.choice(rng.choice(c1)), rng.choice(rng.choice(c2))
                rows.append({"a": a, "b": b, "same": False, "kind": "unrelated", "split": split,
                             "family": f"{f1['name']}+{f2['name']}"})
    seen: set[tuple[str, str]] = set()
    unique = []
    for r in rows:
        key = (min(r["a"], r["b"]), max(r["a"], r["b"]))
        if key not in seen and r["a"] != r["b"]:
            seen.add(key)
            unique.append(r)
    return unique


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args()
    rows = build(args.seed)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with args.out.open("w") as f:
        for r in rows:
            f.write(json.dumps(r, ensure_ascii=False) + "\n")
    counts = Counter((r["split"], r["kind"], r["same"]) for r in rows)
    print(f"{len(rows)} pairs -> {args.out}")
    for (split, kind, same), n in sorted(counts.items()):
        print(f"  {split:12s} {kind:14s} same={same!s:5s} {n}")


if __name__ == "__main__":
    main()
