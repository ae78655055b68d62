"""What the generator writes: event types, firmographic and title vocabularies, names,
URLs, campaigns, the event mixes and its own points rule for MQLs."""

from __future__ import annotations

from typing import Final

from features.contract import EVENT_TYPES

#: Event types outside the contract, written for ~0.5% of events; a reader keeps them as `other`.
UNKNOWN_EVENT_TYPES: Final = ("chat_started", "Sales Call", "video_watched")
#: Every event type written: the contract's (without `other`), then the unknown ones.
WRITTEN_EVENT_TYPES: Final = tuple(t for t in EVENT_TYPES if t != "other") + UNKNOWN_EVENT_TYPES
EVENT_CODE: Final = {name: code for code, name in enumerate(WRITTEN_EVENT_TYPES)}
N_EVENT_TYPES: Final = len(WRITTEN_EVENT_TYPES)

INDUSTRIES: Final[tuple[tuple[str, float], ...]] = (
    ("Software", 0.20),
    ("Financial Services", 0.10),
    ("Healthcare", 0.09),
    ("Manufacturing", 0.10),
    ("Retail", 0.08),
    ("Education", 0.06),
    ("Government", 0.04),
    ("Professional Services", 0.10),
    ("Media", 0.05),
    ("Telecommunications", 0.04),
    ("Energy", 0.04),
    ("Nonprofit", 0.03),
    ("Logistics", 0.04),
    ("Real Estate", 0.03),
)
COUNTRIES: Final[tuple[tuple[str, float], ...]] = (
    ("United States", 0.40),
    ("United Kingdom", 0.10),
    ("Germany", 0.08),
    ("France", 0.06),
    ("Canada", 0.06),
    ("India", 0.07),
    ("Australia", 0.04),
    ("Netherlands", 0.03),
    ("Brazil", 0.04),
    ("Spain", 0.03),
    ("Japan", 0.03),
    ("Singapore", 0.02),
    ("Sweden", 0.02),
    ("Mexico", 0.02),
)
#: Lead sources: (name, base log-weight, drift of the log-weight over the whole period).
LEAD_SOURCES: Final[tuple[tuple[str, float, float], ...]] = (
    ("organic_search", 1.2, -0.3),
    ("paid_search", 1.0, 0.0),
    ("paid_social", 0.1, 1.4),
    ("webinar", 0.5, 0.0),
    ("content_syndication", 0.6, -0.4),
    ("referral", 0.3, 0.0),
    ("event", 0.4, -0.2),
    ("direct", 0.7, 0.0),
    ("partner", 0.0, 0.4),
)

#: Job titles: (title as written, intended seniority, weight at small / mid / large companies).
TITLES: Final[tuple[tuple[str, str, float, float, float], ...]] = (
    ("CEO", "c_level", 5.0, 1.0, 0.2),
    ("Founder", "c_level", 4.0, 0.5, 0.05),
    ("CTO & Co-founder", "c_level", 3.0, 0.5, 0.05),
    ("Co-Founder & CEO", "c_level", 2.0, 0.3, 0.05),
    ("Owner", "c_level", 3.0, 0.3, 0.05),
    ("Chief Marketing Officer", "c_level", 1.0, 0.8, 0.3),
    ("CMO", "c_level", 1.0, 0.6, 0.2),
    ("Chief Revenue Officer", "c_level", 0.5, 0.5, 0.2),
    ("COO", "c_level", 0.8, 0.5, 0.2),
    ("CFO", "c_level", 0.5, 0.5, 0.2),
    ("Managing Director", "c_level", 1.0, 0.5, 0.3),
    ("President", "c_level", 0.8, 0.3, 0.1),
    ("VP Marketing", "vp", 1.0, 2.0, 1.5),
    ("vp marketing", "vp", 0.3, 0.6, 0.4),
    ("VP of Sales", "vp", 0.8, 1.5, 1.2),
    ("VP, Engineering", "vp", 0.3, 0.8, 1.0),
    ("SVP Growth", "vp", 0.1, 0.4, 0.6),
    ("VP, Demand Generation", "vp", 0.2, 0.6, 0.6),
    ("VP Product", "vp", 0.3, 0.6, 0.6),
    ("Head of Growth", "director", 1.0, 1.5, 1.0),
    ("Director, Sales", "director", 0.5, 1.5, 1.5),
    ("Marketing Director", "director", 0.8, 2.0, 1.5),
    ("Director of Engineering", "director", 0.3, 1.0, 1.2),
    ("Head of Data", "director", 0.3, 0.8, 1.0),
    ("Sr. Director, Marketing Operations", "director", 0.0, 0.5, 1.0),
    ("IT Director", "director", 0.2, 1.0, 1.2),
    ("Head of People", "director", 0.3, 0.6, 0.5),
    ("director of demand gen", "director", 0.1, 0.4, 0.4),
    ("marketing manager", "manager", 1.0, 2.0, 2.0),
    ("Marketing Manager", "manager", 2.0, 4.0, 4.0),
    ("MARKETING MANAGER", "manager", 0.2, 0.4, 0.4),
    ("Sales Manager", "manager", 1.0, 2.0, 2.0),
    ("Engineering Manager", "manager", 0.3, 1.2, 1.5),
    ("Product Manager", "manager", 0.5, 1.5, 2.0),
    ("Growth Marketing Manager", "manager", 0.5, 1.5, 1.0),
    ("Team Lead, Customer Success", "manager", 0.2, 0.8, 1.0),
    ("IT Manager", "manager", 0.3, 1.2, 1.5),
    ("Mktg Mgr", "manager", 0.1, 0.3, 0.3),
    ("Sr. Software Engineer", "individual", 0.5, 2.0, 3.0),
    ("Software Engineer", "individual", 0.8, 2.5, 3.5),
    ("DevOps Engineer", "individual", 0.2, 0.8, 1.2),
    ("Data Scientist", "individual", 0.3, 1.0, 1.5),
    ("Data Analyst", "individual", 0.3, 1.0, 1.5),
    ("Marketing Specialist", "individual", 0.8, 2.0, 2.5),
    ("Digital Marketing Specialist", "individual", 0.5, 1.5, 1.5),
    ("Content Writer", "individual", 0.5, 0.8, 0.8),
    ("Account Executive", "individual", 0.5, 1.5, 2.0),
    ("SDR", "individual", 0.3, 1.0, 1.5),
    ("Business Development Representative", "individual", 0.3, 0.8, 1.0),
    ("Solutions Architect", "individual", 0.2, 0.8, 1.0),
    ("UX Designer", "individual", 0.3, 0.6, 0.8),
    ("Accountant", "individual", 0.5, 0.6, 0.6),
    ("Recruiter", "individual", 0.2, 0.5, 0.8),
    ("Consultant", "individual", 1.0, 0.8, 0.8),
    ("Operations Analyst", "individual", 0.2, 0.6, 0.8),
    ("Freelance", "individual", 1.0, 0.2, 0.1),
    ("Marketing", "individual", 0.5, 0.5, 0.5),
    ("  Software Engineer ", "individual", 0.1, 0.2, 0.2),
    ("Marketing Intern", "intern", 0.5, 1.0, 1.2),
    ("Software Engineering Intern", "intern", 0.3, 0.6, 0.8),
    ("Intern", "intern", 0.3, 0.5, 0.5),
    ("Student", "intern", 1.5, 1.5, 1.5),
    ("MBA Student", "intern", 0.3, 0.3, 0.3),
    ("Werkstudent Marketing", "intern", 0.1, 0.2, 0.3),
    ("Trainee", "intern", 0.1, 0.2, 0.3),
)

DOMAIN_WORDS: Final = (
    "acme", "nimbus", "vertex", "bluepeak", "orbit", "quanta", "northwind", "lumen", "helix",
    "cobalt", "redwood", "summit", "atlas", "zephyr", "ember", "granite", "harbor", "ionic",
    "juniper", "kestrel", "lattice", "meridian", "nova", "onyx", "pioneer", "quartz", "riverton",
    "sable", "tundra", "umbra", "vantage", "willow", "xeno", "yonder", "zenith", "arcadia",
    "bramble", "cinder", "dynamo", "evergreen", "falcon", "glacier", "horizon", "indigo", "jasper",
)  # fmt: skip
DOMAIN_SUFFIXES: Final = (
    "",
    "labs",
    "tech",
    "group",
    "systems",
    "-hq",
    "soft",
    "works",
    "ai",
    "data",
)
TLDS: Final = (".com", ".com", ".com", ".io", ".co", ".net", ".de", ".co.uk", ".fr")
FIRST_NAMES: Final = (
    "james", "mary", "john", "patricia", "robert", "jennifer", "michael", "linda", "david",
    "elizabeth", "william", "susan", "priya", "rahul", "wei", "li", "anna", "lukas", "sofia",
    "mateo", "emma", "noah", "olivia", "liam", "ava", "lucas", "mia", "hiro", "yuki", "fatima",
)  # fmt: skip
LAST_NAMES: Final = (
    "smith", "johnson", "williams", "brown", "jones", "garcia", "miller", "davis", "martinez",
    "lopez", "mueller", "schmidt", "dubois", "martin", "rossi", "sharma", "patel", "wang", "zhang",
    "kim", "tanaka", "silva", "santos", "nielsen", "andersson", "novak", "kowalski", "oconnor",
)  # fmt: skip
#: Free mail providers written, most common first (all in the contract's FREE_MAIL_DOMAINS).
FREE_MAIL_PROVIDERS: Final = (
    ("gmail.com", 0.45), ("yahoo.com", 0.12), ("hotmail.com", 0.1), ("outlook.com", 0.1),
    ("icloud.com", 0.06), ("gmx.de", 0.04), ("web.de", 0.03), ("yahoo.co.uk", 0.03),
    ("proton.me", 0.03), ("aol.com", 0.02), ("qq.com", 0.02),
)  # fmt: skip

SITE: Final = "https://www.example-saas.com"
#: URL vocabulary per event type (paths on the vendor's site); absent types have no URL.
URLS: Final[dict[str, tuple[str, ...]]] = {
    "page_view": (
        "/", "/product", "/features/automation", "/features/analytics", "/integrations",
        "/customers", "/blog/lead-scoring-101", "/blog/mql-vs-sql", "/blog/attribution",
        "/docs/getting-started", "/about", "/careers",
    ),
    "pricing_page_view": ("/pricing", "/pricing?plan=team", "/pricing?plan=enterprise"),
    "content_download": (
        "/resources/ebook-lead-scoring", "/resources/benchmark-report-2025",
        "/resources/whitepaper-revops", "/resources/checklist-demand-gen",
    ),
    "webinar_registration": ("/webinars/register",),
    "webinar_attendance": ("/webinars/live",),
    "form_submission": ("/contact", "/contact-sales"),
    "demo_request": ("/demo",),
    "trial_signup": ("/signup", "/signup?plan=trial"),
    "ad_click": ("/lp/paid-social", "/lp/paid-search", "/lp/retargeting"),
    "email_click": ("/blog/mql-vs-sql", "/resources/ebook-lead-scoring", "/webinars/register"),
}  # fmt: skip

CAMPAIGN_KINDS: Final = ("email", "webinar", "paid_social", "content", "event")
CAMPAIGN_KIND_SHARES: Final = (0.45, 0.15, 0.15, 0.15, 0.10)
CAMPAIGN_TOPICS: Final = (
    "lead-scoring", "revops", "ai-assistant", "data-quality", "attribution", "abm", "forecasting",
    "pipeline-review", "customer-stories", "product-launch",
)  # fmt: skip
NEWSLETTER: Final = "Monthly Newsletter"

#: Event type mix of background activity (no campaign) and of each campaign kind's bursts.
TYPE_MIX: Final[dict[str, dict[str, float]]] = {
    "background": {
        "page_view": 0.45, "email_open": 0.25, "email_click": 0.05, "ad_click": 0.06,
        "social_engagement": 0.07, "content_download": 0.03, "pricing_page_view": 0.03,
        "webinar_registration": 0.01, "email_unsubscribe": 0.002, "email_bounce": 0.003,
        "email_reply": 0.002,
    },
    "email": {
        "email_open": 0.66, "email_click": 0.16, "page_view": 0.14, "email_reply": 0.005,
        "email_unsubscribe": 0.006, "email_bounce": 0.008, "content_download": 0.02,
    },
    "webinar": {
        "email_open": 0.35, "webinar_registration": 0.2, "webinar_attendance": 0.1,
        "page_view": 0.25, "email_click": 0.1,
    },
    "paid_social": {"ad_click": 0.3, "social_engagement": 0.35, "page_view": 0.35},
    "content": {"content_download": 0.2, "page_view": 0.4, "email_open": 0.3, "email_click": 0.1},
    "event": {"page_view": 0.5, "email_open": 0.35, "email_click": 0.1, "content_download": 0.05},
}  # fmt: skip
#: Types an intent-driven event is drawn from (the "upgrade" of an ordinary event).
INTENT_MIX: Final = {
    "pricing_page_view": 0.47, "content_download": 0.17, "webinar_attendance": 0.1,
    "email_reply": 0.05, "form_submission": 0.07, "demo_request": 0.07, "trial_signup": 0.07,
}  # fmt: skip

#: Points of the generator's own MQL rule (a running sum; hand-raisers trigger at once).
MQL_POINTS: Final = {
    "email_open": 1, "email_click": 4, "email_reply": 10, "email_unsubscribe": -15,
    "email_bounce": -5, "page_view": 1, "pricing_page_view": 8, "content_download": 6,
    "webinar_registration": 4, "webinar_attendance": 10, "ad_click": 2, "social_engagement": 1,
}  # fmt: skip
HAND_RAISERS: Final = ("form_submission", "demo_request", "trial_signup")
MQL_THRESHOLD: Final = 110
