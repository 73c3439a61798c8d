"""The reasoners' data: what reveals a need and which objects meet it, and synonym groups.

Plain tables, kept apart from the matching code (`phrases`) and the decisions (`rules`) so that
extending what the offline reasoners understand is adding a row here. Triggers are regular
expressions matched on whole, normalised words; hints and synonyms are object names.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Need:
    """Words that reveal a need (regular expressions, matched on whole words) and what meets it.

    `hints` are tried in order; the first one that matches a listed object is picked. `purpose`
    completes the rationale: "picking the sponge to wipe up the spill".
    """

    triggers: tuple[str, ...]
    hints: tuple[str, ...]
    purpose: str


# fmt: off
_CLEANERS = ("sponge", "paper towel", "towel", "napkin", "tissue", "cloth", "rag", "wipe")
_FRUIT = (
    "apple", "banana", "orange", "pear", "peach", "grape", "strawberry", "mango", "lemon",
    "plum", "kiwi", "cherry", "pineapple", "watermelon", "fruit",
)
_FOOD = (
    *_FRUIT, "sandwich", "bread", "bagel", "croissant", "muffin", "cookie", "cracker", "chip",
    "chocolate", "candy", "granola bar", "cereal", "snack", "yogurt", "cheese", "carrot",
    "cake", "donut", "pizza", "burger", "egg", "nut", "food",
)
_DRINKS = (
    "water", "juice", "milk", "coke", "lemonade", "iced tea", "tea", "coffee", "beer", "wine",
    "drink", "beverage", "bottle", "can", "cup", "mug", "glass",
)

#: need -> triggers and object hints. Order matters only for ties (same trigger position).
NEEDS: dict[str, Need] = {
    "spill": Need(
        (r"spill\w*", r"spilt", r"knocked over", r"tip\w* over", r"mess", r"messy", r"leak\w*",
         r"splash\w*", r"wipe\w*", r"clean(?:s|ing)? up", r"wet"),
        _CLEANERS,
        "to wipe up the spill",
    ),
    "dirty hands": Need(
        (r"(?:hand|finger)s? (?:are |is |got |get )?(?:so |very |all )?"
         r"(?:dirty|sticky|greasy|filthy|messy|covered)",
         r"(?:dirty|sticky|greasy|filthy) (?:hand|finger)s?", r"wash (?:my |our )?hands"),
        ("soap", "hand soap", "sanitizer", "wipe", "towel", "paper towel", "napkin", "tissue"),
        "to clean the hands",
    ),
    "sick": Need(
        (r"have a cold", r"caught a cold", r"runny nose", r"blow my nose", r"sneez\w*",
         r"cough\w*", r"flu", r"sick"),
        ("tissue", "napkin", "medicine", "pill", "paper towel"),
        "for the cold",
    ),
    "bathe": Need(
        (r"shower", r"bath", r"swim\w*", r"(?:out of|in) the pool"),
        ("towel", "bathrobe", "soap", "shampoo"),
        "to dry off",
    ),
    "hot drink": Need(
        (r"hot drink", r"warm drink", r"something (?:hot|warm) to drink"),
        ("tea", "coffee", "cocoa", "mug"),
        "for a hot drink",
    ),
    "cold": Need(
        (r"cold", r"freezing", r"chilly", r"shiver\w*", r"something warm"),
        ("blanket", "jacket", "sweater", "hoodie", "coat", "scarf", "glove", "hat", "sock"),
        "to keep warm",
    ),
    "thirsty": Need(
        (r"thirst\w*", r"parched", r"dry mouth", r"drink", r"beverage"),
        _DRINKS,
        "to drink",
    ),
    "hungry": Need(
        (r"hungry", r"hunger", r"starv\w*", r"famished", r"peckish", r"eat", r"food",
         r"snack", r"breakfast", r"lunch", r"dinner"),
        _FOOD,
        "to eat",
    ),
    "fruit": Need((r"fruits?",), _FRUIT, "as the fruit asked for"),
    "sweet": Need(
        (r"sweets?", r"sugary", r"dessert", r"craving"),
        ("candy", "chocolate", "cookie", "cake", "donut", "muffin", "honey", "sugar", "fruit"),
        "as a sweet treat",
    ),
    "seasoning": Need(
        (r"bland", r"tasteless", r"flavou?r\w*", r"season\w*", r"needs salt"),
        ("salt", "pepper", "spice", "ketchup", "mustard", "sauce"),
        "to season the food",
    ),
    "pay": Need(
        (r"pay", r"paying", r"money", r"cash", r"buy"),
        ("wallet", "purse", "credit card", "money"),
        "to pay with",
    ),
    "tired": Need(
        (r"tired", r"sleepy", r"exhausted", r"wake up", r"energy"),
        ("coffee", "energy drink", "tea", "coke"),
        "to stay awake",
    ),
    "pain": Need(
        (r"headache", r"pain", r"hurts?", r"fever", r"not feeling well"),
        ("medicine", "pill", "painkiller", "aspirin", "water"),
        "for the pain",
    ),
    "hot": Need(
        (r"too hot", r"so hot", r"(?:i am|it is|feeling) hot", r"sweat\w*", r"overheat\w*"),
        ("fan", "ice", "water", "cold drink"),
        "to cool down",
    ),
    "write": Need(
        (r"write", r"writing", r"jot", r"take notes?", r"note (?:this|that|it) down", r"sign"),
        ("pen", "pencil", "marker", "notebook", "notepad", "paper"),
        "to write with",
    ),
    "read": Need(
        (r"read", r"reading", r"bored", r"nothing to do"),
        ("book", "magazine", "newspaper", "glass"),
        "to read",
    ),
    "dark": Need(
        (r"dark", r"can ?not see", r"no light"),
        ("flashlight", "torch", "lamp", "candle"),
        "for light",
    ),
    "rain": Need((r"rain\w*",), ("umbrella", "raincoat"), "against the rain"),
    "call": Need(
        (r"call", r"phone", r"text (?:my|him|her|them)"),
        ("phone",),
        "to make the call",
    ),
    "cut": Need((r"cut", r"slice", r"chop"), ("knife", "scissors"), "to cut with"),
    "teeth": Need(
        (r"teeth", r"tooth"),
        ("toothbrush", "toothpaste"),
        "for the teeth",
    ),
    "hair": Need((r"hair",), ("comb", "hairbrush", "brush"), "for the hair"),
    "tv": Need((r"tv", r"television", r"channel"), ("remote",), "for the TV"),
}

# fmt: on

#: Words with the same meaning for object matching; every word maps to its group's first word.
SYNONYMS: tuple[tuple[str, ...], ...] = (
    ("coke", "cola", "soda", "coca"),
    ("phone", "cellphone", "smartphone", "telephone", "mobile"),
    ("trash", "garbage", "rubbish", "bin", "wastebasket"),
    ("tissue", "kleenex"),
    ("sweater", "jumper", "pullover"),
    ("sanitizer", "sanitiser"),
    ("flashlight", "torch"),
)
