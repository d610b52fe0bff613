"""The demo site's data: invented authors, their quotes and the tags on them.

Everything here is fixed at import time so that every run of the site, on
every machine, serves byte-identical pages: tests and examples can count on
exact numbers (100 quotes, 20 authors, 10 pages) instead of scraping loosely.
The text is original to this project; none of it is quoted from anyone real.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "AUTHORS",
    "AUTHORS_BY_SLUG",
    "FAVOURITE_IDS",
    "PAGE_SIZE",
    "QUOTES",
    "QUOTES_BY_TAG",
    "TOP_TAGS",
    "Author",
    "Quote",
    "page_count",
]

PAGE_SIZE = 10


@dataclass(frozen=True, slots=True)
class Author:
    slug: str
    name: str
    born_date: str
    born_location: str
    description: str


@dataclass(frozen=True, slots=True)
class Quote:
    id: int
    text: str
    author: Author
    tags: tuple[str, ...]


# name, born date, born location (phrased as the original sandbox does: "in ..."),
# description, then the author's five quotes with their tags.
_RAW: list[tuple[str, str, str, str, list[tuple[str, tuple[str, ...]]]]] = [
    (
        "Adela Brightwater",
        "April 3, 1902",
        "in Harrowgate Mills, England",
        "The daughter of a lighthouse keeper, Adela Brightwater spent her first twenty years "
        "logging wind and visibility by lamplight. Her essays on weather, patience and the "
        "quiet politics of small towns ran for three decades in a coastal weekly.",
        [
            ("A storm is only weather that has decided to be remembered.", ("nature", "time")),
            (
                "Patience is not waiting; it is keeping the lamp trimmed while you wait.",
                ("patience", "hope"),
            ),
            (
                "Small towns keep their secrets the way harbours keep boats: in plain sight, "
                "and tied up tight.",
                ("home", "humor"),
            ),
            (
                "The fog never argues. It simply arrives, and the whole coast agrees to slow down.",
                ("nature", "simplicity"),
            ),
            (
                "Write letters you would be glad to have returned to you unopened.",
                ("wisdom", "friendship"),
            ),
        ],
    ),
    (
        "Tobias Ferren",
        "November 19, 1871",
        "in Kalmar, Sweden",
        "A watchmaker who kept a notebook on his bench for forty years. The notebooks, full "
        "of remarks on springs, apprentices and the stubbornness of time, were published by "
        "his granddaughter long after the shop had closed.",
        [
            ("Every clock is a small argument that time can be kept.", ("time",)),
            (
                "Nobody thanks the spring that never breaks, but everybody depends on it.",
                ("work", "wisdom"),
            ),
            (
                "Haste is the apprentice who finishes first and is asked to start again.",
                ("work", "patience"),
            ),
            (
                "I have repaired a thousand watches and not one of them gave me an extra hour.",
                ("time", "humor"),
            ),
            ("The finest work hides the skill that made it.", ("work", "simplicity")),
        ],
    ),
    (
        "Ines Okonkwo-Reyes",
        "July 8, 1954",
        "in Lagos, Nigeria",
        "A civil engineer who designed footbridges on three continents before turning to "
        "teaching. Her lectures on why structures fail were famous for beginning with her "
        "own mistakes.",
        [
            (
                "A bridge is a promise made in steel to people you will never meet.",
                ("work", "hope"),
            ),
            (
                "Study failures closely; they are the only reports that never flatter.",
                ("failure", "learning"),
            ),
            (
                "Design for the day everything goes wrong, and you will sleep on the days it "
                "goes right.",
                ("failure", "wisdom"),
            ),
            (
                "Load is honest. It does not care how beautiful your drawings were.",
                ("work", "failure"),
            ),
            ("The river was here first. Build as if you remember that.", ("nature", "change")),
        ],
    ),
    (
        "Zoë Haldane",
        "February 27, 1938",
        "in Dunmore Head, Ireland",
        "A marine biologist who became the voice of a long-running late-night radio programme "
        "about the sea. Listeners wrote in with questions about tides, and she answered every "
        "one of them on air.",
        [
            ("The sea keeps no diary, yet it forgets nothing.", ("the-sea", "time")),
            (
                "Curiosity is a tide: it goes out, but it always comes back with something.",
                ("curiosity", "the-sea"),
            ),
            (
                "Ask the octopus about flexibility, and the barnacle about commitment.",
                ("nature", "humor"),
            ),
            (
                "If you want to feel small in a good way, stand at the edge of low tide at dawn.",
                ("the-sea", "nature"),
            ),
            (
                "Every question I ever asked on air was really the same one: what happens next?",
                ("curiosity", "learning"),
            ),
        ],
    ),
    (
        "Casimir Lutz",
        "September 1, 1889",
        "in Graz, Austria",
        "A cellist who played in provincial orchestras all his life and taught hundreds of "
        "children to hold a bow. He refused every offer to record, saying music should be "
        "heard in the room where it happens.",
        [
            (
                "The rest in a bar of music is not silence; it is the music holding its breath.",
                ("music",),
            ),
            (
                "Practise slowly enough that your mistakes have to introduce themselves.",
                ("music", "learning", "patience"),
            ),
            ("An instrument is a friend who only tells you the truth.", ("music", "friendship")),
            (
                "Play the last note as if the audience were already walking home humming it.",
                ("music", "hope"),
            ),
            (
                "Talent is loud; practice is the one who shows up on Tuesdays.",
                ("learning", "work"),
            ),
        ],
    ),
    (
        "Priya Ramaswamy",
        "January 15, 1967",
        "in Madurai, India",
        "A number theorist better known to the public for the weekly puzzle column she wrote "
        "for twenty years. She answered reader mail in green ink and never printed a puzzle "
        "she had not solved twice.",
        [
            (
                "A good puzzle is a locked door that politely leaves the key in plain view.",
                ("curiosity", "humor"),
            ),
            (
                "Proof is what remains after you have run out of ways to doubt.",
                ("learning", "wisdom"),
            ),
            ("Zero taught us that nothing can be very important.", ("humor", "wisdom")),
            (
                "When stuck, draw a picture. When still stuck, draw a worse picture.",
                ("learning", "humor"),
            ),
            (
                "Elegance is a solution that makes the problem look as if it was never hard.",
                ("simplicity",),
            ),
        ],
    ),
    (
        "Hollis Park",
        "May 30, 1945",
        "in Duluth, Minnesota, USA",
        "A short-order cook who wrote novels on order pads between the breakfast and lunch "
        "rushes. His books are set almost entirely in diners, and his characters are always "
        "hungry for something besides food.",
        [
            (
                "Everyone is a philosopher at two in the morning in an all-night diner.",
                ("life", "humor"),
            ),
            (
                "A novel is just a very long order that the kitchen keeps sending back.",
                ("books", "work", "humor"),
            ),
            (
                "You learn more about people from how they treat the last pancake than from "
                "anything they say.",
                ("life", "friendship"),
            ),
            (
                "Write the way you fry an egg: give it heat, give it time, and leave it alone.",
                ("books", "patience"),
            ),
            (
                "Home is any table where someone slides the salt across without being asked.",
                ("home", "love"),
            ),
        ],
    ),
    (
        "Odile Marchetti",
        "December 12, 1919",
        "in Trieste, Italy",
        "A librarian and translator who worked in four languages and claimed to dream in a "
        "fifth. She catalogued a harbour library single-handed after a flood and translated "
        "poetry in the evenings.",
        [
            (
                "A library is the only place where the dead keep talking and nobody finds it "
                "strange.",
                ("books",),
            ),
            ("Translation is the art of losing something carefully.", ("books", "change")),
            (
                "Return books on time, and forgive people who do not.",
                ("books", "friendship", "humor"),
            ),
            ("Every shelf is a crowd waiting politely to be introduced.", ("books", "curiosity")),
            (
                "Read widely enough and you will meet yourself in a stranger's handwriting.",
                ("books", "life"),
            ),
        ],
    ),
    (
        "Bram Ketelaar",
        "August 22, 1880",
        "in Zwolle, The Netherlands",
        "A barge captain who carried grain and bricks along the canals for half a century. "
        "He wrote a letter home from every lock he passed, and his family kept all of them "
        "in biscuit tins.",
        [
            ("The canal goes where it goes. The art is in arriving anyway.", ("patience", "life")),
            (
                "A slow boat sees every town; a fast one only sees the next lock.",
                ("simplicity", "time"),
            ),
            (
                "Never trust a man who says the water is calm today; he means only here.",
                ("wisdom", "humor"),
            ),
            (
                "Tie your knots as if tomorrow depends on them, because tomorrow usually does.",
                ("work", "wisdom"),
            ),
            (
                "Letters to home are the only cargo that gets lighter the more you carry.",
                ("home", "love"),
            ),
        ],
    ),
    (
        "Noor Haddad",
        "March 9, 1976",
        "in Byblos, Lebanon",
        "A landscape architect who designs public gardens on difficult ground: rooftops, "
        "old rail yards, a former car park. She insists every garden she builds has at least "
        "one bench with no view of a road.",
        [
            (
                "A garden is a conversation with people who will arrive after you have left.",
                ("nature", "hope"),
            ),
            (
                "Leave paths a little too narrow; it teaches people to walk together.",
                ("friendship", "simplicity"),
            ),
            (
                "Weeds are only plants that have not yet been introduced properly.",
                ("nature", "humor"),
            ),
            (
                "The best benches face the view and forgive the sitter for falling asleep.",
                ("simplicity", "life"),
            ),
            (
                "Cities breathe through their gardens; build as if you want them to keep "
                "breathing.",
                ("nature", "change"),
            ),
        ],
    ),
    (
        "Eliza Thornbury",
        "October 5, 1833",
        "in Bath, England",
        "A governess whose pupils remembered her for the herbarium she made them keep. Her "
        "pressed-plant collection, annotated in a tiny slanted hand, now fills eleven "
        "cabinets in a county museum.",
        [
            ("A pressed flower is a summer folded small enough to keep.", ("nature", "time")),
            (
                "Teach a child to look closely and you have given them a fortune no one can spend.",
                ("learning", "curiosity"),
            ),
            (
                "I have found more courage in a seedling splitting a stone than in most generals.",
                ("courage", "nature"),
            ),
            (
                "Manners are kindness that has been practised until it no longer needs thinking "
                "about.",
                ("wisdom", "friendship"),
            ),
            ("Every herbarium is a diary written by the weather.", ("nature", "books")),
        ],
    ),
    (
        "Rufus Adeyemi",
        "June 17, 1961",
        "in Ibadan, Nigeria",
        "A mathematics teacher who coached the school football team for thirty seasons "
        "without a single championship and with a waiting list of players every year.",
        [
            (
                "Nobody remembers the score; everybody remembers who passed them the ball.",
                ("friendship", "life"),
            ),
            (
                "Courage is raising your hand when you are not sure of the answer.",
                ("courage", "learning"),
            ),
            (
                "Losing is a lesson that arrives without asking if you are ready.",
                ("failure", "learning"),
            ),
            (
                "Practice is the promise you keep to the player you want to become.",
                ("work", "hope"),
            ),
            (
                "A good teacher tidies the classroom and leaves the questions messy.",
                ("learning", "curiosity"),
            ),
        ],
    ),
    (
        "Greta Solberg",
        "April 28, 1928",
        "in Tromsø, Norway",
        "A mountain guide who led parties across glaciers well into her seventies. Her "
        "memoir is less about summits than about the long walks back down.",
        [
            ("The summit is optional. Coming home is not.", ("courage", "wisdom")),
            (
                "Mountains do not care about your plans, which is exactly why you need them.",
                ("nature", "humor"),
            ),
            ("Fear is a good map reader but a terrible driver.", ("courage",)),
            (
                "Walk at the pace of the slowest person, and the whole rope arrives.",
                ("friendship", "patience"),
            ),
            (
                "Snow falls one flake at a time and still buries the valley.",
                ("patience", "change"),
            ),
        ],
    ),
    (
        "Anselm Crane",
        "November 2, 1898",
        "in Providence, Rhode Island, USA",
        "A newspaper cartoonist whose single-panel drawings ran on the editorial page for "
        "thirty-one years. Politicians of every party complained about him, which he took "
        "as proof that he was doing his job.",
        [
            (
                "I draw the news so that people can laugh at it before it laughs at them.",
                ("humor", "life"),
            ),
            (
                "A deadline is a cheerful monster that eats procrastinators first.",
                ("humor", "work"),
            ),
            (
                "The trouble with common sense is that nobody ever handed it out evenly.",
                ("humor", "wisdom"),
            ),
            ("Optimism is buying a larger eraser.", ("humor", "hope")),
            ("Every self-important man is a caricature waiting for a pencil.", ("humor",)),
        ],
    ),
    (
        "Mei Lin Tao",
        "February 11, 1983",
        "in Chengdu, China",
        "A software engineer who has spent her career keeping old systems alive. Her essays "
        "argue that maintenance, not invention, is where most of the world's care goes.",
        [
            ("Maintenance is the love letter nobody reads aloud.", ("work", "love")),
            ("Every shortcut becomes somebody's long way round.", ("work", "wisdom")),
            (
                "The bug you cannot reproduce is the one that is reproducing you.",
                ("humor", "failure"),
            ),
            (
                "Delete a line of code and you delete every future mistake it would have made.",
                ("simplicity",),
            ),
            (
                "A system is only as calm as the person on call at three in the morning.",
                ("work", "life"),
            ),
        ],
    ),
    (
        "Dorothea Vance",
        "July 21, 1911",
        "in Savannah, Georgia, USA",
        "A stage actress who toured with repertory companies for twenty years and then "
        "taught drama in a converted church hall. Her students called her rehearsals "
        "'the weather', because nobody could predict them.",
        [
            ("The stage forgives every mistake except hesitation.", ("courage", "failure")),
            (
                "Learn your lines so well you can forget them and still be right.",
                ("learning", "work"),
            ),
            ("An audience can hear a lie even when the words are true.", ("wisdom", "life")),
            ("Bow as if you are thanking them, not asking them.", ("simplicity", "love")),
            (
                "The curtain falls, the lights go up, and everyone has to find their coat. "
                "That is life.",
                ("life", "humor"),
            ),
        ],
    ),
    (
        "Ilya Petrov-Sands",
        "January 30, 1950",
        "in Odessa, Ukraine",
        "A chess coach who ran a free club in the back room of a bakery for four decades. "
        "He kept a notebook of every blunder his students made, and called it his "
        "favourite book.",
        [
            (
                "Every blunder is a lesson in disguise, but the disguise is usually very good.",
                ("failure", "humor", "learning"),
            ),
            (
                "Before you move, ask what your opponent wants. Then ask again.",
                ("wisdom", "patience"),
            ),
            (
                "The pawn that reaches the far side was never told it was unimportant.",
                ("courage", "hope"),
            ),
            (
                "A draw is not nothing; it is two people agreeing that they both tried.",
                ("friendship", "life"),
            ),
            ("Play the position, not the player, and never the clock.", ("wisdom", "time")),
        ],
    ),
    (
        "Saoirse Quill",
        "September 14, 1990",
        "in Galway, Ireland",
        "A poet who runs a small bakery and prints a new poem on the paper bags every "
        "month. Her first collection was assembled from the bags customers brought back.",
        [
            ("Bread rises in the dark. So do most good ideas.", ("hope", "patience")),
            ("A poem is a recipe for a feeling you have not had yet.", ("books", "love")),
            (
                "Knead the dough like you mean it and the loaf will forgive the rest.",
                ("simplicity", "work"),
            ),
            ("Love is the warm slice handed over before anyone has asked.", ("love",)),
            (
                "Nothing keeps the winter out like flour on the windowsill & a kettle on.",
                ("home", "simplicity"),
            ),
        ],
    ),
    (
        "Henrik Ostby",
        "March 3, 1865",
        "in Bergen, Norway",
        "A surveyor and mapmaker who charted fjords from a rowing boat. He left deliberate "
        "blank spaces on his drafts and wrote 'go and look' in the margins.",
        [
            ("A map is a polite lie that helps you find the truth.", ("wisdom", "curiosity")),
            (
                "Leave blank spaces on every chart; someone must be invited to go and look.",
                ("curiosity", "courage"),
            ),
            (
                "Coastlines grow longer the closer you look, and so do friendships.",
                ("friendship", "the-sea"),
            ),
            ("Compass needles tremble because they care where north is.", ("hope", "nature")),
            (
                "I drew the world for fifty years and never once caught it standing still.",
                ("change", "time"),
            ),
        ],
    ),
    (
        "Lucía Ferrand",
        "May 6, 1972",
        "in Valparaíso, Chile",
        "A sailor and children's author who has crossed the Pacific twice in a boat she "
        "rebuilt herself. Her picture books are read aloud in harbour towns from Chile to "
        "New Zealand.",
        [
            (
                "Children know the sea is alive; adults just stop asking it questions.",
                ("the-sea", "curiosity"),
            ),
            (
                "Reef the sails before you need to; courage is mostly good timing.",
                ("courage", "the-sea"),
            ),
            (
                "A story at bedtime is a small boat that carries a child safely into the night.",
                ("books", "love"),
            ),
            (
                "The horizon is the only promise that keeps moving to stay true.",
                ("hope", "the-sea"),
            ),
            (
                "Some days the wind says no, and the wise sailor puts the kettle on.",
                ("patience", "humor"),
            ),
        ],
    ),
]


def _slug(name: str) -> str:
    """Slugs stay ASCII so URLs need no escaping, even for names like Zoë."""
    ascii_name = name.translate(str.maketrans("ëíéáóú", "eieaou"))
    return "-".join(ascii_name.split())


def _build() -> tuple[tuple[Author, ...], tuple[Quote, ...]]:
    authors = tuple(
        Author(_slug(name), name, born, where, description)
        for name, born, where, description, _ in _RAW
    )
    # Round-robin over the authors so that every page mixes ten different voices.
    quotes: list[Quote] = []
    rounds = max(len(entry[4]) for entry in _RAW)
    for i in range(rounds):
        for author, entry in zip(authors, _RAW, strict=True):
            if i < len(entry[4]):
                text, tags = entry[4][i]
                quotes.append(Quote(len(quotes), f"\u201c{text}\u201d", author, tags))
    return authors, tuple(quotes)


AUTHORS, QUOTES = _build()
AUTHORS_BY_SLUG: dict[str, Author] = {a.slug: a for a in AUTHORS}


def _by_tag(quotes: tuple[Quote, ...]) -> dict[str, tuple[Quote, ...]]:
    grouped: dict[str, list[Quote]] = {}
    for quote in quotes:
        for tag in quote.tags:
            grouped.setdefault(tag, []).append(quote)
    return {tag: tuple(found) for tag, found in grouped.items()}


QUOTES_BY_TAG = _by_tag(QUOTES)

# The sidebar's "top tags": most used first, ties broken by name for stable output.
TOP_TAGS: tuple[str, ...] = tuple(
    sorted(QUOTES_BY_TAG, key=lambda tag: (-len(QUOTES_BY_TAG[tag]), tag))[:10]
)

# The demo account's favourite quotes, shown on /private/ once logged in.
FAVOURITE_IDS: frozenset[int] = frozenset({3, 17, 28, 46, 59, 71, 88})


def page_count(total: int) -> int:
    return max(1, -(-total // PAGE_SIZE))
