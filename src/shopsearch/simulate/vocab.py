"""The simulator's fixed vocabulary: category tree, attributes, regional words, preset markets.

Every word that differs between English dialects is a :class:`Term` with variant weights per
dialect (``us``, ``gb``, ``au``), once for product titles and once for what users type: US titles
say "Sofa" or "Couch" while US users type "couch" more often; British titles and users say
"Trainers", "Jumper", "Torch", "Pushchair", "Rubbish Bin"; sizes are "US 9" or "UK 8", "10 in" or
"26 cm"; colours "Gray" or "Grey". Each market jitters its dialect's weights (see
:class:`~shopsearch.simulate.config.MarketParams`), so a model has to learn the mapping between
query words and title words from logs and text.
"""

from __future__ import annotations

from dataclasses import dataclass

#: Dialects whose weights a :class:`Term` lists, in this order.
DIALECTS = ("us", "gb", "au")


@dataclass(frozen=True)
class Term:
    """A word or phrase with regional variants (display forms, first letters capitalised).

    Attributes:
        variants: the display forms; queries use them lower-cased.
        title: per dialect (in :data:`DIALECTS` order), weights of each variant in titles.
        query: per dialect, weights of each variant in users' queries.
    """

    variants: tuple[str, ...]
    title: tuple[tuple[float, ...], ...]
    query: tuple[tuple[float, ...], ...]


def lit(*words: str) -> tuple[Term, ...]:
    """Terms with one form everywhere."""
    return tuple(Term((w,), ((1.0,),) * 3, ((1.0,),) * 3) for w in words)


def regional(
    variants: tuple[str, ...],
    title: dict[str, tuple[float, ...]],
    query: dict[str, tuple[float, ...]],
) -> Term:
    """A term whose variants are weighted per dialect; dialects left out use ``us`` weights."""

    def per_dialect(weights: dict[str, tuple[float, ...]]) -> tuple[tuple[float, ...], ...]:
        rows = tuple(weights.get(d, weights["us"]) for d in DIALECTS)
        if any(len(row) != len(variants) or sum(row) <= 0 for row in rows):
            raise ValueError(f"bad weights for {variants}")
        return rows

    return Term(variants, per_dialect(title), per_dialect(query))


@dataclass(frozen=True)
class Slot:
    """An attribute of a leaf category.

    Attributes:
        name: the attribute key (``color``, ``material``, ...).
        values: the possible values.
        pre: shown before the head noun in titles ("Grey Linen Sofa") or after it ("…, 3-Seater").
        title_rate: chance a product's title shows this attribute (descriptions always do).
    """

    name: str
    values: tuple[Term, ...]
    pre: bool
    title_rate: float


@dataclass(frozen=True)
class Leaf:
    """A leaf category: its path, head noun, attributes and price distribution (USD)."""

    path: tuple[str, str, str]
    head: Term
    slots: tuple[Slot, ...]
    price_median: float
    price_sigma: float


@dataclass(frozen=True)
class MarketSpec:
    """A preset market: a country storefront with its currency, dialect and price level.

    Attributes:
        domain_id: the domain id in the logs.
        name: display name.
        language: BCP 47 language tag.
        currency: ISO 4217 code of local prices.
        fx: local currency units per US dollar.
        price_level: local price level relative to the US (after currency conversion).
        price_sensitivity: the market's mean price sensitivity of users.
        dialect: which :data:`DIALECTS` weights its vocabulary starts from.
    """

    domain_id: str
    name: str
    language: str
    currency: str
    fx: float
    price_level: float
    price_sensitivity: float
    dialect: str


MARKETS: tuple[MarketSpec, ...] = (
    MarketSpec("us", "United States", "en-US", "USD", 1.0, 1.0, 1.0, "us"),
    MarketSpec("gb", "United Kingdom", "en-GB", "GBP", 0.79, 1.05, 1.3, "gb"),
    MarketSpec("au", "Australia", "en-AU", "AUD", 1.52, 1.1, 1.15, "au"),
    MarketSpec("ca", "Canada", "en-CA", "CAD", 1.36, 1.05, 1.1, "us"),
    MarketSpec("ie", "Ireland", "en-IE", "EUR", 0.92, 1.08, 1.2, "gb"),
    MarketSpec("nz", "New Zealand", "en-NZ", "NZD", 1.65, 1.12, 1.2, "au"),
    MarketSpec("in", "India", "en-IN", "INR", 83.0, 0.75, 1.7, "gb"),
    MarketSpec("sg", "Singapore", "en-SG", "SGD", 1.34, 1.0, 0.9, "gb"),
)

# -- shared regional words ---------------------------------------------------------------------
GREY = regional(
    ("Grey", "Gray"),
    title={"us": (0, 1), "gb": (1, 0), "au": (1, 0)},
    query={"us": (2, 8), "gb": (9, 1), "au": (8, 2)},
)
SPACE_GREY = regional(
    ("Space Grey", "Space Gray"),
    title={"us": (0, 1), "gb": (1, 0), "au": (1, 0)},
    query={"us": (2, 8), "gb": (9, 1), "au": (8, 2)},
)
ALUMINIUM = regional(
    ("Aluminium", "Aluminum"),
    title={"us": (0, 1), "gb": (1, 0), "au": (1, 0)},
    query={"us": (1, 9), "gb": (9, 1), "au": (8, 2)},
)


def _sizes(pairs: tuple[tuple[str, str], ...], uk_share_au: float = 1.0) -> tuple[Term, ...]:
    """Sizes written one way in the US and another in the UK/Australia ("10 in" / "26 cm")."""
    au = (1 - uk_share_au, uk_share_au)
    return tuple(
        regional(
            pair,
            title={"us": (1, 0), "gb": (0, 1), "au": au},
            query={"us": (19, 1), "gb": (1, 9), "au": (max(au[0], 0.1), max(au[1], 0.1))},
        )
        for pair in pairs
    )


SHOE_SIZES = _sizes((("US 7", "UK 6"), ("US 8", "UK 7"), ("US 9", "UK 8"), ("US 10", "UK 9")))
PAN_SIZES = _sizes((("8 in", "20 cm"), ("10 in", "26 cm"), ("12 in", "30 cm")))
DESK_WIDTHS = _sizes((("48 in", "120 cm"), ("55 in", "140 cm"), ("63 in", "160 cm")))
BIN_SIZES = _sizes((("8 gal", "30 L"), ("13 gal", "50 L"), ("16 gal", "60 L")))

FURNITURE_COLORS = (*lit("Beige", "Navy", "Green", "Cream", "Charcoal"), GREY)
APPAREL_COLORS = (*lit("Black", "White", "Navy", "Red", "Olive", "Beige"), GREY)
TECH_COLORS = lit("Black", "White", "Silver", "Blue")

LEAVES: tuple[Leaf, ...] = (
    Leaf(
        ("Furniture", "Living Room", "Sofas"),
        regional(
            ("Sofa", "Couch", "Settee"),
            title={"us": (7, 3, 0), "gb": (85, 0, 15), "au": (65, 35, 0)},
            query={"us": (45, 55, 0), "gb": (70, 5, 25), "au": (35, 65, 0)},
        ),
        (
            Slot("color", FURNITURE_COLORS, True, 0.7),
            Slot("material", lit("Linen", "Velvet", "Leather", "Boucle", "Cotton"), True, 0.6),
            Slot("style", lit("Modern", "Mid-Century", "Chesterfield", "Scandinavian"), True, 0.5),
            Slot("seats", lit("2-Seater", "3-Seater", "4-Seater", "Corner"), False, 0.7),
        ),
        900.0,
        0.5,
    ),
    Leaf(
        ("Furniture", "Living Room", "Coffee Tables"),
        regional(
            ("Coffee Table", "Cocktail Table"),
            title={"us": (85, 15), "gb": (1, 0), "au": (1, 0)},
            query={"us": (8, 2), "gb": (1, 0), "au": (1, 0)},
        ),
        (
            Slot("material", lit("Oak", "Walnut", "Glass", "Marble", "Metal"), True, 0.8),
            Slot("shape", lit("Round", "Rectangular", "Square", "Oval"), True, 0.6),
            Slot("style", lit("Modern", "Rustic", "Industrial", "Farmhouse"), True, 0.4),
        ),
        250.0,
        0.5,
    ),
    Leaf(
        ("Furniture", "Bedroom", "Wardrobes"),
        regional(
            ("Wardrobe", "Armoire", "Closet"),
            title={"us": (4, 4, 2), "gb": (1, 0, 0), "au": (9, 0, 1)},
            query={"us": (3, 3, 4), "gb": (95, 5, 0), "au": (9, 0, 1)},
        ),
        (
            Slot("material", lit("Oak", "Pine", "White Gloss", "Walnut"), True, 0.7),
            Slot("doors", lit("2-Door", "3-Door", "4-Door"), True, 0.6),
            Slot("style", lit("Sliding", "Mirrored", "Classic", "Modern"), True, 0.5),
        ),
        600.0,
        0.5,
    ),
    Leaf(
        ("Furniture", "Bedroom", "Mattresses"),
        lit("Mattress")[0],
        (
            Slot("material", lit("Memory Foam", "Pocket Spring", "Latex", "Hybrid"), True, 0.8),
            Slot("firmness", lit("Soft", "Medium", "Firm"), True, 0.5),
            Slot("size", lit("Single", "Double", "Queen", "King"), False, 0.8),
        ),
        700.0,
        0.45,
    ),
    Leaf(
        ("Furniture", "Office", "Desks"),
        lit("Desk")[0],
        (
            Slot("color", (*lit("White", "Black"), GREY), True, 0.4),
            Slot("material", lit("Oak", "Walnut", "Bamboo", "Steel", "Glass"), True, 0.6),
            Slot("style", lit("Standing", "Writing", "Corner", "Gaming"), True, 0.7),
            Slot("width", DESK_WIDTHS, False, 0.5),
        ),
        300.0,
        0.6,
    ),
    Leaf(
        ("Furniture", "Office", "Office Chairs"),
        regional(
            ("Office Chair", "Desk Chair", "Computer Chair"),
            title={"us": (6, 3, 1), "gb": (8, 2, 0), "au": (8, 1, 1)},
            query={"us": (40, 35, 25), "gb": (70, 25, 5), "au": (60, 20, 20)},
        ),
        (
            Slot("color", (*lit("Black", "White", "Blue"), GREY), True, 0.5),
            Slot("material", lit("Mesh", "Leather", "Fabric"), True, 0.6),
            Slot("style", lit("Ergonomic", "Executive", "Gaming", "Task"), True, 0.7),
        ),
        220.0,
        0.5,
    ),
    Leaf(
        ("Electronics", "Audio", "Headphones"),
        regional(
            ("Headphones", "Earphones", "Earbuds", "Headset"),
            title={"us": (60, 0, 30, 10), "gb": (50, 30, 15, 5), "au": (55, 20, 20, 5)},
            query={"us": (45, 5, 40, 10), "gb": (45, 35, 15, 5), "au": (45, 20, 30, 5)},
        ),
        (
            Slot("feature", lit("Wireless", "Noise-Cancelling", "Wired", "Sport"), True, 0.8),
            Slot("fit", lit("Over-Ear", "On-Ear", "In-Ear"), True, 0.6),
            Slot("color", TECH_COLORS, False, 0.6),
        ),
        120.0,
        0.8,
    ),
    Leaf(
        ("Electronics", "Audio", "Speakers"),
        regional(
            ("Speaker", "Loudspeaker"),
            title={"us": (9, 1)},
            query={"us": (95, 5)},
        ),
        (
            Slot("feature", lit("Bluetooth", "Smart", "Portable", "Waterproof"), True, 0.8),
            Slot("size", lit("Mini", "Compact", "Large"), True, 0.5),
            Slot("color", (*TECH_COLORS, GREY), False, 0.6),
        ),
        100.0,
        0.8,
    ),
    Leaf(
        ("Electronics", "Phones", "Mobile Phones"),
        regional(
            ("Smartphone", "Cell Phone", "Mobile Phone", "Mobile"),
            title={"us": (60, 40, 0, 0), "gb": (60, 0, 40, 0), "au": (60, 0, 40, 0)},
            query={"us": (35, 50, 5, 10), "gb": (30, 0, 30, 40), "au": (30, 0, 35, 35)},
        ),
        (
            Slot("network", lit("5G", "Dual SIM", "Unlocked"), True, 0.5),
            Slot("storage", lit("64GB", "128GB", "256GB", "512GB"), False, 0.8),
            Slot("color", lit("Black", "White", "Blue", "Green", "Purple"), False, 0.6),
        ),
        500.0,
        0.6,
    ),
    Leaf(
        ("Electronics", "Computers", "Laptops"),
        regional(
            ("Laptop", "Notebook"),
            title={"us": (85, 15), "gb": (75, 25), "au": (80, 20)},
            query={"us": (95, 5), "gb": (85, 15), "au": (90, 10)},
        ),
        (
            Slot("screen", lit("13 in", "14 in", "15.6 in", "17 in"), True, 0.7),
            Slot("type", lit("Gaming", "Ultrabook", "2-in-1", "Business"), True, 0.6),
            Slot("memory", lit("8GB RAM", "16GB RAM", "32GB RAM"), False, 0.6),
            Slot("color", (*lit("Silver", "Black"), SPACE_GREY), False, 0.3),
        ),
        900.0,
        0.5,
    ),
    Leaf(
        ("Electronics", "TV & Video", "Televisions"),
        regional(
            ("TV", "Television", "Telly"),
            title={"us": (70, 30, 0), "gb": (60, 40, 0), "au": (70, 30, 0)},
            query={"us": (90, 10, 0), "gb": (70, 10, 20), "au": (90, 10, 0)},
        ),
        (
            Slot("screen", lit("43 in", "50 in", "55 in", "65 in", "75 in"), True, 0.9),
            Slot("panel", lit("LED", "QLED", "OLED"), True, 0.7),
            Slot("resolution", lit("HD", "4K", "8K"), True, 0.6),
        ),
        600.0,
        0.7,
    ),
    Leaf(
        ("Apparel", "Shoes", "Running Shoes"),
        regional(
            ("Running Shoes", "Sneakers", "Trainers", "Runners"),
            title={"us": (50, 50, 0, 0), "gb": (50, 0, 50, 0), "au": (50, 0, 20, 30)},
            query={"us": (30, 70, 0, 0), "gb": (30, 5, 65, 0), "au": (30, 10, 20, 40)},
        ),
        (
            Slot("color", APPAREL_COLORS, True, 0.7),
            Slot("material", lit("Mesh", "Knit", "Leather", "Synthetic"), True, 0.4),
            Slot("style", lit("Trail", "Road", "Racing", "Cushioned"), True, 0.6),
            Slot("size", SHOE_SIZES, False, 0.5),
        ),
        110.0,
        0.4,
    ),
    Leaf(
        ("Apparel", "Shoes", "Boots"),
        lit("Boots")[0],
        (
            Slot("color", (*lit("Black", "Brown", "Tan"), GREY), True, 0.6),
            Slot("material", lit("Leather", "Suede", "Rubber"), True, 0.6),
            Slot("style", lit("Chelsea", "Hiking", "Ankle", "Winter"), True, 0.8),
            Slot("size", SHOE_SIZES, False, 0.5),
        ),
        150.0,
        0.45,
    ),
    Leaf(
        ("Apparel", "Bottoms", "Trousers"),
        regional(
            ("Pants", "Trousers", "Slacks"),
            title={"us": (85, 0, 15), "gb": (0, 100, 0), "au": (50, 50, 0)},
            query={"us": (90, 0, 10), "gb": (10, 90, 0), "au": (60, 40, 0)},
        ),
        (
            Slot("color", APPAREL_COLORS, True, 0.6),
            Slot("material", lit("Cotton", "Linen", "Wool", "Corduroy"), True, 0.5),
            Slot("style", lit("Chino", "Cargo", "Slim Fit", "Wide Leg"), True, 0.8),
            Slot("size", lit("W30", "W32", "W34", "W36"), False, 0.6),
        ),
        60.0,
        0.5,
    ),
    Leaf(
        ("Apparel", "Tops", "Sweaters"),
        regional(
            ("Sweater", "Jumper", "Pullover"),
            title={"us": (85, 0, 15), "gb": (20, 70, 10), "au": (20, 80, 0)},
            query={"us": (90, 0, 10), "gb": (10, 85, 5), "au": (10, 90, 0)},
        ),
        (
            Slot("color", APPAREL_COLORS, True, 0.7),
            Slot("material", lit("Wool", "Cashmere", "Cotton", "Merino"), True, 0.7),
            Slot("style", lit("Crew Neck", "V-Neck", "Turtleneck", "Cable Knit"), True, 0.6),
            Slot("size", lit("S", "M", "L", "XL"), False, 0.5),
        ),
        70.0,
        0.5,
    ),
    Leaf(
        ("Apparel", "Outerwear", "Jackets"),
        regional(("Jacket", "Coat"), title={"us": (8, 2)}, query={"us": (7, 3)}),
        (
            Slot("color", APPAREL_COLORS, True, 0.6),
            Slot("material", lit("Down", "Leather", "Denim", "Fleece"), True, 0.5),
            Slot("style", lit("Puffer", "Bomber", "Parka", "Rain"), True, 0.8),
            Slot("size", lit("S", "M", "L", "XL"), False, 0.5),
        ),
        150.0,
        0.5,
    ),
    Leaf(
        ("Home & Kitchen", "Kitchen", "Frying Pans"),
        regional(
            ("Frying Pan", "Skillet", "Fry Pan"),
            title={"us": (40, 50, 10), "gb": (90, 5, 5), "au": (80, 10, 10)},
            query={"us": (30, 60, 10), "gb": (90, 10, 0), "au": (80, 10, 10)},
        ),
        (
            Slot(
                "material",
                lit("Cast Iron", "Stainless Steel", "Nonstick", "Carbon Steel", "Copper"),
                True,
                0.8,
            ),
            Slot("feature", lit("Induction", "Oven-Safe", "Ceramic"), True, 0.4),
            Slot("size", PAN_SIZES, False, 0.6),
        ),
        45.0,
        0.6,
    ),
    Leaf(
        ("Home & Kitchen", "Kitchen", "Kettles"),
        regional(
            ("Kettle", "Electric Kettle", "Tea Kettle"),
            title={"us": (30, 50, 20), "gb": (80, 20, 0), "au": (80, 20, 0)},
            query={"us": (30, 50, 20), "gb": (90, 10, 0), "au": (85, 15, 0)},
        ),
        (
            Slot("color", lit("Black", "White", "Silver", "Red", "Cream"), True, 0.5),
            Slot("material", lit("Stainless Steel", "Glass", "Plastic"), True, 0.6),
            Slot(
                "feature",
                lit("Cordless", "Temperature Control", "Gooseneck", "Whistling"),
                True,
                0.6,
            ),
            Slot("capacity", lit("1.0 L", "1.5 L", "1.7 L"), False, 0.5),
        ),
        50.0,
        0.5,
    ),
    Leaf(
        ("Home & Kitchen", "Storage", "Trash Cans"),
        regional(
            ("Trash Can", "Garbage Can", "Rubbish Bin", "Bin", "Wastebasket"),
            title={"us": (60, 30, 0, 0, 10), "gb": (0, 0, 60, 40, 0), "au": (0, 0, 50, 50, 0)},
            query={"us": (60, 30, 0, 2, 8), "gb": (0, 0, 50, 50, 0), "au": (0, 0, 30, 70, 0)},
        ),
        (
            Slot("color", (*lit("Black", "White", "Silver"), GREY), True, 0.4),
            Slot("material", lit("Stainless Steel", "Plastic", "Bamboo"), True, 0.6),
            Slot("feature", lit("Pedal", "Touchless", "Swing Lid", "Recycling"), True, 0.6),
            Slot("capacity", BIN_SIZES, False, 0.6),
        ),
        40.0,
        0.6,
    ),
    Leaf(
        ("Home & Kitchen", "Lighting", "Flashlights"),
        regional(
            ("Flashlight", "Torch"),
            title={"us": (1, 0), "gb": (0, 1), "au": (1, 9)},
            query={"us": (95, 5), "gb": (5, 95), "au": (15, 85)},
        ),
        (
            Slot("material", (ALUMINIUM, *lit("Plastic")), True, 0.4),
            Slot("feature", lit("Rechargeable", "Tactical", "Waterproof", "LED"), True, 0.7),
            Slot("size", lit("Compact", "Standard", "Heavy Duty"), True, 0.4),
            Slot("color", lit("Black", "Red", "Blue"), False, 0.3),
        ),
        30.0,
        0.6,
    ),
    Leaf(
        ("Sports & Outdoors", "Cycling", "Bicycles"),
        regional(
            ("Bike", "Bicycle", "Cycle"),
            title={"us": (50, 50, 0)},
            query={"us": (80, 20, 0), "gb": (70, 20, 10), "au": (80, 20, 0)},
        ),
        (
            Slot("color", lit("Black", "White", "Red", "Blue", "Green"), True, 0.4),
            Slot("frame", (ALUMINIUM, *lit("Carbon", "Steel")), True, 0.5),
            Slot("type", lit("Mountain", "Road", "Hybrid", "Electric"), True, 0.9),
            Slot("size", lit("Small Frame", "Medium Frame", "Large Frame"), False, 0.5),
        ),
        700.0,
        0.7,
    ),
    Leaf(
        ("Sports & Outdoors", "Fitness", "Yoga Mats"),
        regional(("Yoga Mat", "Exercise Mat"), title={"us": (8, 2)}, query={"us": (85, 15)}),
        (
            Slot("color", lit("Purple", "Blue", "Black", "Pink", "Green"), True, 0.5),
            Slot("material", lit("TPE", "Natural Rubber", "PVC", "Cork"), True, 0.6),
            Slot("feature", lit("Non-Slip", "Travel", "Extra Thick"), True, 0.5),
            Slot("thickness", lit("4 mm", "6 mm", "8 mm"), False, 0.6),
        ),
        35.0,
        0.5,
    ),
    Leaf(
        ("Baby", "Travel", "Strollers"),
        regional(
            ("Stroller", "Pushchair", "Pram", "Buggy"),
            title={"us": (100, 0, 0, 0), "gb": (10, 60, 20, 10), "au": (50, 20, 30, 0)},
            query={"us": (95, 0, 5, 0), "gb": (5, 50, 25, 20), "au": (40, 20, 40, 0)},
        ),
        (
            Slot("color", (*lit("Black", "Navy", "Beige"), GREY), True, 0.5),
            Slot("type", lit("Jogging", "Travel System", "Lightweight", "Double"), True, 0.8),
            Slot("feature", lit("Reversible Seat", "One-Hand Fold", "All-Terrain"), False, 0.4),
        ),
        350.0,
        0.6,
    ),
    Leaf(
        ("Baby", "Travel", "Car Seats"),
        lit("Car Seat")[0],
        (
            Slot("color", (*lit("Black", "Navy"), GREY), True, 0.4),
            Slot("type", lit("Infant", "Convertible", "Booster"), True, 0.8),
            Slot("feature", lit("ISOFIX", "Rotating", "Lightweight"), False, 0.5),
        ),
        200.0,
        0.5,
    ),
)

#: Most attribute slots of any leaf (attribute codes are stored in arrays this wide).
MAX_SLOTS = 4

#: Phrases users shorten (lower case, as typed) and their abbreviation.
ABBREVIATIONS: tuple[tuple[str, str], ...] = (
    ("noise-cancelling", "anc"),
    ("bluetooth", "bt"),
    ("stainless steel", "ss"),
    ("mid-century", "mcm"),
    ("television", "tv"),
    ("cast iron", "ci"),
    ("memory foam", "memfoam"),
    ("wireless", "wless"),
    ("2-in-1", "2in1"),
    ("temperature control", "temp control"),
    ("extra thick", "xthick"),
    ("-seater", " seater"),
    ("smartphone", "phone"),
    ("one-hand fold", "1 hand fold"),
)

#: Neighbouring keys on a QWERTY keyboard, for substitution typos.
KEY_NEIGHBOURS: dict[str, str] = {
    "a": "qsz", "b": "vn", "c": "xv", "d": "sf", "e": "wr", "f": "dg", "g": "fh", "h": "gj",
    "i": "uo", "j": "hk", "k": "jl", "l": "k", "m": "n", "n": "bm", "o": "ip", "p": "o",
    "q": "wa", "r": "et", "s": "ad", "t": "ry", "u": "yi", "v": "cb", "w": "qe", "x": "zc",
    "y": "tu", "z": "x",
}  # fmt: skip

#: Syllables brand names are made of (names are generated, so no real trademark is meant).
BRAND_HEADS = (
    "Ac", "Al", "Bel", "Bor", "Cal", "Dar", "El", "Fen", "Gal", "Hal", "Is", "Jor", "Kel",
    "Lum", "Mar", "Nor", "Or", "Pel", "Quin", "Ros", "Sol", "Tor", "Ul", "Vel", "Wen", "Zan",
)  # fmt: skip
BRAND_TAILS = (
    "ma", "vik", "tra", "dex", "lio", "ren", "sa", "ton", "vo", "ria", "lux", "nis", "ko",
    "mond", "tek", "via", "ra", "berg", "lin", "do",
)  # fmt: skip

#: Closing sentences of product descriptions.
DESCRIPTION_EXTRAS = (
    "Ships within 3 working days.",
    "Covered by a 2-year warranty.",
    "Easy to clean and care for.",
    "Designed to last.",
    "Free returns within 30 days.",
    "Assembly instructions included.",
    "Great value for everyday use.",
)
