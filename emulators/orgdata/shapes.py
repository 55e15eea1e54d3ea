"""The org shapes `generate(..., org=NAME)` can build. "brightwave" is the default demo org; the others differ
from it in every org-level dimension (names, languages, counts, which user or type carries which edge case)."""

from __future__ import annotations

from .model import OrgDataError
from .shape import ActivityFieldSpec as AF
from .shape import ActivityTypeSpec, OrgShape, PipelineSpec, UserSpec
from .shape import FieldSpec as F

BRIGHTWAVE = OrgShape(
    name="brightwave",
    org_name="Brightwave Analytics",
    domain="brightwave.example.com",
    brand="Brightwave",
    currencies=("USD", "EUR", "GBP"),
    users=(
        UserSpec("Jane", "Doe", "jane.doe@{d}", "Jane.Doe@{D}", owner_weight=6),
        UserSpec("Marco", "Rossi", "marco.rossi@{d}", "marco.rossi@{d}", owner_weight=5),
        UserSpec("Aiko", "Tanaka", "aiko.tanaka@{d}", "AIKO.TANAKA@{D}", owner_weight=4),
        UserSpec("Olusegun", "Adeyemi", "olusegun.adeyemi@{d}", "olusegun.adeyemi@{d}", owner_weight=4),
        UserSpec("Sofía", "Müller", "sofia.mueller@{d}", "Sofia.Mueller@{d}", owner_weight=3),
        UserSpec("Liam", "O'Brien", "liam.obrien@{d}", None, owner_weight=2),  # contractor: no Dynamics user
        UserSpec("Priya", "Raman", "priya.raman@{d}", "priya.raman@{d}", True, owner_weight=2),  # left
        UserSpec("Tom", "Baker", "tom.baker@{d}", "Tom.Baker@{d}", close_active=False, owner_weight=2),
    ),
    lead_statuses=(
        ("Potential", 30),
        ("Contacted", 20),
        ("Qualified", 12),
        ("Customer", 18),
        ("Bad Fit", 8),
        ("Not Interested", 7),
        ("Canceled", 5),
    ),
    pipelines=(
        PipelineSpec(
            "Sales",
            (
                ("Demo Scheduled", "active"),
                ("Proposal Sent", "active"),
                ("Negotiation", "active"),
                ("Won", "won"),
                ("Lost", "lost"),
            ),
            70,
        ),
        PipelineSpec(
            "Renewals",
            (
                ("Up for Renewal", "active"),
                ("Renewal Negotiation", "active"),
                ("Renewed", "won"),
                ("Churned", "lost"),
            ),
            25,
        ),
        PipelineSpec("Partnerships", (("Intro", "active"), ("Signed", "won"), ("Declined", "lost")), 5),
    ),
    # Every Close field type appears on every object kind.
    custom_fields=(
        (
            "lead",
            (
                F(
                    "Industry",
                    "choices",
                    choices=("Software", "Real estate", "Healthcare", "Retail", "Manufacturing"),
                ),
                F("Product Interest", "choices", True, ("Analytics", "Dashboards", "API", "Consulting")),
                F("Employees", "number", description="Headcount of the company"),
                F("Contract Start", "date"),
                F("Last Demo At", "datetime"),
                F("Lead Owner", "user", description="User responsible for this lead"),
                F("Primary Contact", "contact"),
                F("Internal Notes", "textarea"),
                F("Referral Source", "text"),
                F("Legacy CRM ID", "hidden", description="Id in the CRM used before Close"),
                F("Account Team", "user", True),
            ),
        ),
        (
            "contact",
            (
                F("Role", "choices", True, ("Decision Maker", "Gatekeeper", "Champion", "End User")),
                F("Seniority", "choices", choices=("Junior", "Senior", "Executive")),
                F("Birthday", "date"),
                F("Last Contacted At", "datetime"),
                F("Lead Score", "number"),
                F("LinkedIn Handle", "text"),
                F("Bio", "textarea"),
                F("Relationship Owner", "user"),
                F("Assistant", "contact"),
                F("Import Hash", "hidden"),
            ),
        ),
        (
            "opportunity",
            (
                F("Deal Type", "choices", choices=("New Business", "Upsell", "Renewal")),
                F("Competitors", "choices", True, ("Tableau", "Looker", "Power BI", "In-house")),
                F("Seats", "number"),
                F("Expected Go-Live", "date"),
                F("Demo Done At", "datetime"),
                F("Sales Engineer", "user"),
                F("Champion", "contact"),
                F("Loss Reason Detail", "textarea"),
                F("PO Number", "text"),
                F("Sync Token", "hidden"),
            ),
        ),
    ),
    activity_types=(
        ActivityTypeSpec(
            "Demo Feedback",
            "Structured feedback captured after every product demo",
            False,
            (
                AF("Rating", "number", required=True),
                AF("Outcome", "choices", choices=("Positive", "Neutral", "Negative"), required=True),
                AF("Topics", "choices", True, ("Pricing", "Security", "Integrations", "Reporting")),
                AF("Follow-up Date", "date"),
                AF("Demo Start", "datetime"),
                AF("Presenter", "user"),
                AF("Attendee", "contact"),
                AF("Comments", "textarea"),
                AF("Recording Link", "text"),
                AF("Internal Score", "hidden"),
            ),
            share=0.6,
        ),
        ActivityTypeSpec(
            "Onboarding Checklist",
            "Customer onboarding milestones",
            False,
            (
                AF(
                    "Stage",
                    "choices",
                    choices=("Kickoff", "Data Import", "Training", "Go-Live"),
                    required=True,
                ),
                AF("Kickoff Date", "date"),
                AF("Notes", "textarea"),
            ),
            share=0.4,
            orphaned_values=("Yes", "No", "Partially"),
        ),
        ActivityTypeSpec("Site Visit", "Retired in 2024", True, (AF("Visit Summary", "text"),)),
    ),
)

# A German/European org: one pipeline with two won statuses, few fields (no hidden ones), and the archived
# custom activity type is the one whose instances carry orphaned values.
NORDLICHT = OrgShape(
    name="nordlicht",
    org_name="Nordlicht Vertrieb GmbH & Co. KG",
    domain="nordlicht.example.net",
    brand="Nordlicht",
    currencies=("EUR", "GBP", "USD"),
    users=(
        UserSpec("Katrin", "Weiß", "katrin.weiss@{d}", "Katrin.Weiss@{D}", owner_weight=5),
        UserSpec("Jürgen", "Schäfer", "juergen.schaefer@{d}", "juergen.schaefer@{d}", owner_weight=4),
        UserSpec("Lars", "Øberg", "lars.oberg@{d}", "LARS.OBERG@{D}", True, owner_weight=2),  # left
        UserSpec("Anneke", "de Vries", "anneke.devries@{d}", None, owner_weight=3),  # freelancer
        UserSpec("Małgorzata", "Nowak", "malgorzata.nowak@{d}", "malgorzata.nowak@{d}", close_active=False),
    ),
    lead_statuses=(
        ("Neu", 30),
        ("Kontaktiert – Rückruf, später", 25),
        ("Kunde", 20),
        ("Nicht interessiert", 15),
        ("Do Not Contact", 10),
    ),
    pipelines=(
        PipelineSpec(
            "Vertrieb DACH",
            (
                ("Erstgespräch", "active"),
                ("Angebot versendet", "active"),
                ("Verhandlung – Einkauf", "active"),
                ("Gewonnen", "won"),
                ("Won, pending PO", "won"),
                ("Verloren", "lost"),
            ),
            100,
        ),
    ),
    custom_fields=(
        (
            "lead",
            (
                F(
                    "Branche",
                    "choices",
                    choices=(
                        "Maschinenbau",
                        "Öffentliche Verwaltung",
                        "Handel – Einzelhandel",
                        "Software, IT & Telekommunikation",
                    ),
                ),
                F("Mitarbeiterzahl", "number"),
                F("Umsatzsteuer-ID", "text", description="USt-IdNr. laut Handelsregister"),
                F("Vertragsbeginn", "date"),
                F("Betreuer", "user"),
                F("Notizen", "textarea"),
            ),
        ),
        (
            "contact",
            (
                F("Anrede", "choices", choices=("Herr", "Frau", "Divers – keine Angabe")),
                F("Abteilung", "text"),
                F("Geburtstag", "date"),
                F("Sprachen", "choices", True, ("Deutsch", "Englisch", "Französisch", "Dänisch, Schwedisch")),
            ),
        ),
        (
            "opportunity",
            (
                F("Lizenzen", "number"),
                F(
                    "Wettbewerber",
                    "choices",
                    True,
                    ("SAP", "Salesforce", "HubSpot", "Eigenentwicklung – intern"),
                ),
                F("Entscheidung am", "datetime"),
                F("Zahlungsziel", "choices", choices=("14 Tage", "30 Tage, netto", "60 Tage")),
                F("Ansprechpartner", "contact"),
            ),
        ),
    ),
    activity_types=(
        # Archived after its "Lead-Qualität" field was deleted: old instances still carry that value.
        ActivityTypeSpec(
            "Messekontakt",
            "Nicht mehr genutzt seit 2023",
            True,
            (
                AF("Messe", "choices", choices=("Hannover Messe", "CeBIT", "IFA – Berlin"), required=True),
                AF("Notiz", "text"),
            ),
            share=0.3,
            orphaned_values=("Ja", "Nein", "Teilweise, mit Einschränkungen"),
        ),
        ActivityTypeSpec(
            "Kundenbesuch",
            "Besuchsbericht nach jedem Termin vor Ort",
            False,
            (
                AF(
                    "Ergebnis",
                    "choices",
                    choices=("Positiv", "Neutral", "Negativ – kein Bedarf"),
                    required=True,
                ),
                AF("Besuchsdatum", "date", required=True),
                AF("Bericht", "textarea", required=True),
                AF("Teilnehmer", "contact"),
                AF("Nächster Schritt", "text"),
            ),
            share=0.7,
        ),
    ),
)

# A Spanish/French-language org: four pipelines, many users and fields, an archived type that has instances.
PACIFICA = OrgShape(
    name="pacifica",
    org_name="Pacífica Soluciones, S.L. – Groupe Côte d'Azur",
    domain="pacifica.example.org",
    brand="Pacífica",
    currencies=("GBP", "USD", "EUR"),
    users=(
        UserSpec("Lucía", "Fernández", "lucia.fernandez@{d}", "Lucia.Fernandez@{D}", owner_weight=5),
        UserSpec("Jean-Baptiste", "Moreau", "jb.moreau@{d}", "jb.moreau@{d}", owner_weight=5),
        UserSpec("Inès", "Dubois", "ines.dubois@{d}", "INES.DUBOIS@{D}", owner_weight=4),
        UserSpec("Álvaro", "Núñez", "alvaro.nunez@{d}", None, owner_weight=2),  # agency: no Dynamics user
        UserSpec("Carles", "Puig i Ferrer", "carles.puig@{d}", "carles.puig@{d}", owner_weight=3),
        UserSpec("Javier", "Ortega", "javier.ortega@{d}", "javier.ortega@{d}", True, owner_weight=2),
        UserSpec("Maëlle", "Le Gall", "maelle.legall@{d}", "Maelle.LeGall@{d}", owner_weight=3),
        UserSpec("Chloé", "Bernard", "chloe.bernard@{d}", None, owner_weight=1),  # intern: no Dynamics user
        UserSpec("Sophie", "Martin", "sophie.martin@{d}", "sophie.martin@{d}", True, owner_weight=1),
        UserSpec(
            "Rosa María",
            "Vidal",
            "rosamaria.vidal@{d}",
            "RosaMaria.Vidal@{D}",
            True,
            close_active=False,
            owner_weight=2,
        ),
    ),
    lead_statuses=(("Qualifié – en cours", 50), ("Converted", 30), ("No contactar", 20)),
    pipelines=(
        PipelineSpec(
            "Ventas España",
            (
                ("Prospección", "active"),
                ("Propuesta enviada", "active"),
                ("Cliente", "won"),
                ("Perdido", "lost"),
            ),
            50,
        ),
        PipelineSpec(
            "Ventes France",
            (
                ("Découverte", "active"),
                ("Gagné", "won"),
                ("Perdu", "lost"),
                ("Négociation, juridique", "active"),
            ),
            30,
        ),
        PipelineSpec(
            "Renouvellements – Renovaciones",
            (("À renouveler", "active"), ("Renouvelé", "won"), ("Résilié", "lost")),
            15,
        ),
        PipelineSpec(
            "Partners, Resellers & OEM",
            (("Intro", "active"), ("Firmado", "won"), ("Rechazado", "lost")),
            5,
        ),
    ),
    custom_fields=(
        (
            "lead",
            (
                F(
                    "Sector",
                    "choices",
                    choices=("Hostelería, turismo", "Énergie – renouvelable", "Agroalimentaire", "Educación"),
                ),
                F(
                    "Région / Región",
                    "choices",
                    choices=("Île-de-France", "Cataluña", "Andalucía", "Provence-Alpes-Côte d'Azur"),
                ),
                F("Etiquetas", "choices", True, ("VIP", "Sector público", "À relancer", "Prioridad – alta")),
                F("Nombre d'employés", "number"),
                F("Date de création", "date"),
                F("Dernier contact", "datetime"),
                F("Responsable", "user"),
                F("Equipo", "user", True),
                F("Contacto principal", "contact"),
                F("Observaciones", "textarea"),
                F("SIRET / NIF", "text", description="Identifiant fiscal – identificador fiscal"),
                F("ID heredado", "hidden"),
            ),
        ),
        (
            "contact",
            (
                F(
                    "Cargo, nivel",
                    "choices",
                    choices=("Dirección", "Mando intermedio", "Técnico – especialista"),
                ),
                F("Idioma preferido", "choices", choices=("Español", "Français", "Català", "English")),
                F("Fecha de nacimiento", "date"),
                F("Puntuación", "number"),
                F("LinkedIn", "text"),
            ),
        ),
        (
            "opportunity",
            (
                F(
                    "Tipo de acuerdo",
                    "choices",
                    choices=("Nouvelle affaire", "Renovación", "Ampliación, upsell"),
                ),
                F("Concurrents", "choices", True, ("Salesforce", "Odoo", "Sage – X3", "Ninguno, interno")),
                F("Licences", "number"),
                F("Mise en service", "date"),
                F("Ingeniero preventa", "user"),
                F("Motivo de pérdida", "textarea"),
                F("Bon de commande", "text"),
                F("Clave de sincronización", "hidden"),
            ),
        ),
    ),
    activity_types=(
        ActivityTypeSpec(
            "Visite client / Visita",
            "Compte rendu de visite – informe de visita",
            False,
            (
                AF(
                    "Résultat",
                    "choices",
                    choices=("Favorable", "À revoir – plus tard", "Défavorable, sans suite"),
                    required=True,
                ),
                AF(
                    "Temas tratados", "choices", True, ("Precio", "Sécurité", "Intégration, API", "Formación")
                ),
                AF("Durée (min)", "number", required=True),
                AF("Acompañante", "user"),
                AF("Compte rendu", "textarea"),
            ),
            share=0.5,
        ),
        ActivityTypeSpec(
            "Incidencia de soporte",
            "Incidencias abiertas por clientes",
            False,
            (
                AF("Prioridad", "choices", choices=("Alta", "Media", "Baja"), required=True),
                AF("Fecha de resolución", "datetime"),
                AF("Descripción", "textarea", required=True),
            ),
            share=0.3,
            orphaned_values=("Sí", "No", "En curso – pendiente"),
        ),
        ActivityTypeSpec(
            "Formation / Formación",
            "Sessions de formation",
            False,
            (
                AF("Módulo", "choices", choices=("Básico", "Avanzado – admin")),
                AF("Asistentes", "number"),
                AF("Fecha", "date", required=True),
            ),
            share=0.15,
        ),
        # Archived after a year of use: its instances are still in the org.
        ActivityTypeSpec(
            "Salon professionnel",
            "Archivé – ancien suivi des salons",
            True,
            (AF("Salon", "text", required=True), AF("Stand visité", "choices", choices=("Oui", "Non"))),
            share=0.05,
        ),
    ),
)

SHAPES: dict[str, OrgShape] = {s.name: s for s in (BRIGHTWAVE, NORDLICHT, PACIFICA)}
ORG_SHAPES: tuple[str, ...] = tuple(SHAPES)
DEFAULT_SHAPE = BRIGHTWAVE.name


def get_shape(name: str) -> OrgShape:
    """The shape called `name`, or an OrgDataError naming the known ones."""
    if not isinstance(name, str) or name not in SHAPES:
        raise OrgDataError(f"unknown org shape {name!r}; choose one of {', '.join(ORG_SHAPES)}")
    return SHAPES[name]
