"""Word pools the generator draws from; drawing shared strings keeps large orgs cheap in time and memory."""

from __future__ import annotations

FIRST_NAMES = (
    "James Mary Robert Patricia John Jennifer Michael Linda David Elizabeth William Barbara Richard Susan "
    "Joseph Jessica Thomas Sarah Charles Karen Christopher Lisa Daniel Nancy Matthew Betty Anthony Sandra "
    "Mark Ashley Steven Emily Paul Donna Andrew Michelle Joshua Carol Kevin Amanda Brian Melissa George "
    "Deborah Timothy Stephanie Ronald Rebecca Jason Laura Ryan Helen Jacob Sharon Gary Cynthia Nicholas "
    "Kathleen Eric Amy Jonathan Angela Larry Anna Justin Ruth Scott Brenda Frank Pamela Raymond Nicole "
    "Gregory Samantha Benjamin Katherine Samuel Christine Patrick Emma Noah Olivia Lucas Mia Ethan Ava"
).split()

LAST_NAMES = (
    "Smith Johnson Williams Brown Jones Garcia Miller Davis Rodriguez Martinez Hernandez Lopez Gonzalez "
    "Wilson Anderson Thomas Taylor Moore Jackson Martin Lee Perez Thompson White Harris Sanchez Clark "
    "Ramirez Lewis Robinson Walker Young Allen King Wright Scott Torres Nguyen Hill Flores Green Adams "
    "Nelson Baker Hall Rivera Campbell Mitchell Carter Roberts Gomez Phillips Evans Turner Diaz Parker "
    "Cruz Edwards Collins Reyes Stewart Morris Morales Murphy Cook Rogers Gutierrez Ortiz Morgan Cooper "
    "Peterson Bailey Reed Kelly Howard Ramos Kim Cox Ward Richardson Watson Brooks Chavez Wood Bennett"
).split()

# Names that must survive every encoding hop (Cyrillic, CJK, Arabic, Greek, accented Latin, Devanagari).
NON_LATIN_PEOPLE = (
    "Иван Петров",
    "Анастасия Смирнова",
    "王伟",
    "李娜",
    "佐藤 健",
    "محمد العلي",
    "فاطمة الزهراء",
    "Γιώργος Παπαδόπουλος",
    "Zoë Müller-Lüdenscheidt",
    "François Lefèvre",
    "Łukasz Żółkiewski",
    "Søren Kierkegård",
    "राहुल शर्मा",
    "김민준",
)

# The first five cover Cyrillic, CJK, Arabic, Greek and accented Latin: even the tiny org has all of them.
NON_LATIN_COMPANIES = (
    "ООО «Ромашка»",
    "北京科技有限公司",
    "شركة الأفق للتجارة",
    "Ελληνικά Ηλεκτρικά Α.Ε.",
    "Société Générale d'Équipement",
    "Газпром Нефть Сервис",
    "株式会社サクラ",
    "Müller & Söhne GmbH",
    "Đặng Thị Hoa Co.",
    "삼성물산 파트너스",
)

COMPANY_WORDS_A = (
    "Acme Apex Blue Bright Cedar Clear Coastal Crimson Delta Eagle Echo Evergreen Falcon First Frontier "
    "Global Golden Granite Harbor Horizon Iron Jade Keystone Lakeside Liberty Lumen Maple Meridian Metro "
    "Nexus North Nova Oak Orbit Pacific Peak Pine Pioneer Prime Quantum Redwood Ridge River Sapphire "
    "Silver Sky Solar Summit Sun Swift Terra Titan True Union United Vertex Vista West Willow Zenith"
).split()

COMPANY_WORDS_B = (
    "Analytics Bakery Biotech Builders Capital Cloud Consulting Dental Design Dynamics Energy Engineering "
    "Fitness Foods Freight Health Holdings Hospitality Insurance Labs Legal Logistics Marketing Media "
    "Medical Motors Networks Partners Pharma Properties Realty Retail Robotics Security Software Solutions "
    "Studios Supply Systems Technologies Telecom Textiles Therapy Tools Travel Ventures Wellness Works"
).split()

COMPANY_SUFFIXES = ("", "", "", " Inc.", " LLC", " Ltd", " GmbH", " Corp", " Co.", " Group", " & Co", " SA")

TITLES = (
    "CEO",
    "CTO",
    "CFO",
    "VP Sales",
    "VP Marketing",
    "Head of Operations",
    "Procurement Manager",
    "IT Director",
    "Office Manager",
    "Founder",
    "Account Executive",
    "Operations Analyst",
    "Product Manager",
    "",
    None,
)

CITIES = (
    ("San Francisco", "CA", "94105", "US"),
    ("New York", "NY", "10001", "US"),
    ("Austin", "TX", "73301", "US"),
    ("Chicago", "IL", "60601", "US"),
    ("Seattle", "WA", "98101", "US"),
    ("Boston", "MA", "02110", "US"),
    ("London", "", "EC1A 1BB", "GB"),
    ("Berlin", "", "10115", "DE"),
    ("Paris", "", "75001", "FR"),
    ("Toronto", "ON", "M5H 2N2", "CA"),
)

STREETS = ("Market St", "Main St", "Broadway", "High Street", "Elm Ave", "Harbor Blvd", "Unter den Linden")

SUBJECTS = (
    "Quick question about your team",
    "Following up on our call",
    "Proposal for {company}",
    "Re: pricing options",
    "Intro: {company} x {brand}",
    "Demo recap and next steps",
    "Contract draft attached",
    "Checking in",
    "Your trial ends soon",
    "Meeting notes – Q3 planning",
    "Invoice #{n}",
    "Renewal for {company}",
)

BODIES = (
    "Hi {first},\n\nThanks for taking the time to chat today. As promised, here is a short summary of what we "
    "discussed and the proposed next steps.\n\nBest,\n{sender}",
    "Hello {first},\n\nJust following up on my previous email. Would Tuesday or Thursday work for a 20 minute "
    "call?\n\nCheers,\n{sender}",
    "Hi {first},\n\nPlease find the updated proposal attached. Let me know if you have any questions about "
    "the pricing tiers or the implementation timeline.\n\nRegards,\n{sender}",
    "{first},\n\nWe are interested but need sign-off from finance first. I will get back to you next week.\n\n"
    "Thanks",
    "Hi {first} — great meeting you at the conference! Sharing the deck we talked about.\n\n{sender}",
)

NOTES = (
    "Spoke with the decision maker; budget approved for next quarter.",
    "Left a voicemail, will try again Friday.",
    "Customer asked for a security questionnaire and SOC 2 report.",
    "Competitor is cheaper but lacks the reporting module.",
    "Needs integration with their ERP before they can sign.",
    "Champion is leaving the company at the end of the month – find a new sponsor.",
    "Pricing objection: wants annual billing with a 15% discount.",
    "Très intéressé, rappeler après les vacances.",
    "Клиент просит скидку, обсудить с руководством.",
    "Great call! 🎉 They want a pilot with 20 seats.",
)

SMS_TEXTS = (
    "Hi {first}, are we still on for 3pm?",
    "Thanks! Sent the contract over by email.",
    "Running 5 min late, sorry!",
    "Can you call me back when you have a minute?",
    "Yes, Thursday works.",
    "Got it 👍",
)

ATTACHMENT_KINDS = (
    ("proposal.pdf", "application/pdf"),
    ("screenshot.png", "image/png"),
    ("pricing.xlsx", "application/vnd.openxmlformats-officedocument.spreadsheetml.sheet"),
    ("contract.docx", "application/vnd.openxmlformats-officedocument.wordprocessingml.document"),
    ("logo.jpg", "image/jpeg"),
    ("notes.txt", "text/plain"),
    ("Angebot für Kunden.pdf", "application/pdf"),
)

MEETING_TITLES = ("Discovery call", "Product demo", "Pricing review", "Quarterly business review", "Kickoff")
