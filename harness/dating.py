"""The ``dating`` dataset, version 2: pairs of generated dating *profiles* with a continuous
compatibility score. Deterministic for ``seed``. (Version 1, pairs of single sentences, is
``harness/dating_v1.py``, available as the dataset ``dating-v1``.)

How a profile is made
---------------------
* Like the prompts of a dating app, both profiles of a pair answer the same two to four of seven
  *topics*, one sentence each; each may add one topic of its own (30%) and a neutral filler
  sentence (job, home town or hobby; 50%), in a shuffled order.
* A stance is one of -2, -1, +1, +2: strongly or mildly against, mildly or strongly for.
  Strong stances carry an intensifier ("Definitely, ..."), mild ones a hedge ("I think ...").
* Each stance sentence is built compositionally: a *template family* (FAMILIES) x a template of
  that family x a synonym of the topic (a verb phrase or a noun phrase) x the polarity's form
  (for example "I {vp}." / "I don't {vp}.") x an intensifier or hedge x a lead-in. Each topic
  has dozens of wordings per stance.

Held out by family
------------------
Whole template families are reserved: families in ``SPLIT_FAMILIES["test"]`` occur only in the
test split, those of ``"validation"`` only in validation. The test split therefore measures how a
model generalises to sentence *shapes* it never saw, not only to new sentences.

The gold score (documented weights)
-----------------------------------
For the topics both profiles state, each topic's agreement is
``1 - |stance_a - stance_b| / 4`` (1 same stance, 0.75 same side at another strength, 0.5 mild
opposites, 0.25, 0 strong opposites). The score is the weighted mean of the agreements with
``TOPIC_WEIGHTS``: the dealbreakers kids and smoking weigh 3, religion 2, the preferences 1. So
one dealbreaker conflict outweighs agreement on a preference or two. The score is in [0, 1] with
many distinct values. The pair's *category* is its deciding topic: the shared topic with the
largest weighted disagreement (ties: heavier topic, then the order of TOPICS).

The phenomenon (why the stock model is inverted)
------------------------------------------------
On a shared topic where the two profiles take opposite sides, the second profile reuses the first
one's template and synonym with the other polarity ``SAME_WORDING_P`` (80%) of the time ("I want
kids." / "I don't want kids."). Where they are on the same side, the second profile always words
it differently (another family and another synonym). A model that mostly matches words therefore
scores incompatible profiles as more similar: the stock all-MiniLM-L6-v2's test Spearman is
negative (a slow test pins it). Fine-tuning has to learn that negation and stance decide.

Independence
------------
Every profile appears in exactly one pair, and profile ids are disjoint across splits. Pairs are
therefore independent draws of the generator; each pair's ``group`` (its two profile ids) is its
own cluster for the statistics.
"""

from __future__ import annotations

import numpy as np

VERSION = "dating-v2"
SPLIT_SIZES = {"train": 2000, "validation": 500, "test": 1500}
TOPIC_WEIGHTS = {"kids": 3.0, "smoking": 3.0, "religion": 2.0, "pets": 1.0, "nightlife": 1.0, "activity": 1.0,
                 "travel": 1.0}
TOPICS = tuple(TOPIC_WEIGHTS)
STANCES = (-2, -1, 1, 2)
STANCE_P = (0.3, 0.2, 0.2, 0.3)
SAME_WORDING_P = 0.8  # share of opposed shared topics worded with the same template and synonym
SHARED_TOPICS = (1, 2, 2, 3)  # how many topics both profiles answer (drawn uniformly from this tuple)
PRIVATE_TOPIC_P = 0.3  # each profile may add one topic the other does not state
FILLER_P = 0.5  # share of profiles with a neutral filler sentence
PREFIX_P = 0.8  # a hedge or intensifier comes first; otherwise it follows as its own short sentence
LEAD_INS = ("", "Hi! ", "Hey there. ", "About me: ", "Quick intro: ", "Hello! ")

# Synonyms per topic: verb phrases (after "I", in the base form) and noun phrases.
VERB_PHRASES = {
    "kids": ["want kids", "want children", "want to have children", "want to start a family",
             "plan to raise a family", "hope to become a parent", "see kids in my future"],
    "smoking": ["smoke", "smoke cigarettes", "enjoy a cigarette", "like to smoke now and then", "vape",
                "light up after dinner"],
    "religion": ["go to church", "pray every day", "believe in God", "practise my faith", "keep the sabbath",
                 "want a religious home"],
    "pets": ["love dogs", "keep pets", "want a home full of animals", "adopt rescue pets",
             "let my cat sleep on the bed", "love having animals around"],
    "nightlife": ["go clubbing", "party on weekends", "love a night out", "stay out dancing late",
                  "hit the bars on Fridays", "enjoy loud concerts"],
    "activity": ["work out daily", "go running", "hit the gym", "train for marathons", "hike every weekend",
                 "play team sports"],
    "travel": ["travel abroad", "love long flights", "backpack around the world", "plan my next trip",
               "want to live overseas", "explore new countries"],
}
NOUN_PHRASES = {
    "kids": ["kids", "children", "a family of my own", "parenthood", "raising children"],
    "smoking": ["smoking", "cigarettes", "tobacco", "vaping", "a smoke after dinner"],
    "religion": ["faith", "religion", "church on Sundays", "prayer", "a religious life"],
    "pets": ["pets", "dogs", "cats", "animals at home", "a house full of pets"],
    "nightlife": ["nightlife", "clubbing", "late parties", "bars on Fridays", "dancing till 3am"],
    "activity": ["fitness", "working out", "running", "the gym", "outdoor sports"],
    "travel": ["travel", "trips abroad", "long flights", "backpacking", "exploring new countries"],
}

# Template families: each template is (for, against), with a slot {vp} or {np}.
FAMILIES: dict[str, list[tuple[str, str]]] = {
    "plain": [("I {vp}.", "I don't {vp}."), ("I really {vp}.", "I really don't {vp}.")],
    "emphatic": [("I do {vp}.", "I do not {vp}."), ("Yes, I {vp}.", "No, I do not {vp}.")],
    "never": [("I'd say I {vp}.", "I'd say I never {vp}."), ("It's true: I {vp}.", "It's true: I never {vp}.")],
    "all_in": [("When it comes to {np}, I'm all in.", "When it comes to {np}, count me out."),
               ("On {np}: I'm in.", "On {np}: I'm out.")],
    "fan": [("I'm a big fan of {np}.", "I'm not a fan of {np}."),
            ("I'm totally into {np}.", "I'm not into {np} at all.")],
    "match": [("Looking for a match who is into {np}.", "Looking for a match who is not into {np}."),
              ("My partner should love {np}.", "My partner should avoid {np}.")],
    "yes_no": [("{np}? Yes, please.", "{np}? No, thanks."), ("{np}: a yes from me.", "{np}: a no from me.")],
    "for_against": [("I'm all for {np}.", "I'm against {np}."),
                    ("I'm in favour of {np}.", "I'm not in favour of {np}.")],
    "count_on": [("Count on me to {vp}.", "Count on me to never {vp}."),
                 ("You can expect me to {vp}.", "Don't expect me to {vp}.")],
    "know": [("You should know that I {vp}.", "You should know that I don't {vp}."),
             ("Full disclosure: I {vp}.", "Full disclosure: I don't {vp}.")],
    "life": [("My life would feel empty without {np}.", "My life feels better without {np}."),
             ("I can't imagine a future without {np}.", "I can't imagine a future with {np}.")],
    "question": [("There's no question that I {vp}.", "There's no way that I {vp}."),
                 ("It goes without saying that I {vp}.", "It goes without saying that I never {vp}.")],
    "say_yes": [("I'd say yes to {np} any day.", "I'd say no to {np} any day."),
                ("Say yes to {np}, that's me.", "Say no to {np}, that's me.")],
    "deal": [("{np} is a big plus for me.", "{np} is a big minus for me."),
             ("{np} would be a bonus in a partner.", "{np} would be a problem in a partner.")],
}
SPLIT_FAMILIES = {
    "train": ("plain", "emphatic", "never", "all_in", "match", "yes_no", "for_against", "life", "question", "deal"),
    "validation": ("say_yes", "count_on"),
    "test": ("know", "fan"),
}
STRONG = {"prefix": ["Definitely, ", "Absolutely: ", "No doubt about it: ", "For real, "],
          "suffix": [" For sure.", " No question.", " That's firm."]}
MILD = {"prefix": ["I think ", "Probably ", "I guess ", "Maybe "],
        "suffix": [" More or less.", " I suppose.", " Most days."]}
FILLER = {
    "templates": ["I work as {job}.", "I'm {job} based in {city}.", "In my free time I enjoy {hobby}.",
                  "Ask me about {hobby}.", "Friends say I'm good at {hobby}.", "I grew up in {city}."],
    "job": ["a nurse", "a teacher", "an engineer", "a chef", "an accountant", "a designer", "a lawyer",
            "a carpenter", "a pharmacist", "a photographer", "a librarian", "a plumber"],
    "city": ["Leeds", "Austin", "Lyon", "Porto", "Denver", "Glasgow", "Utrecht", "Perth", "Quebec", "Bergen"],
    "hobby": ["cooking", "reading novels", "board games", "painting", "gardening", "photography", "chess",
              "baking bread", "playing guitar", "knitting", "crosswords", "pottery"],
}


def generate(*, seed: int = 0, sizes: dict[str, int] = SPLIT_SIZES) -> dict[str, list[dict]]:
    """Rows ``{text_a, text_b, score, category, group, profile_a, profile_b, shared, stances_a, stances_b,
    families_a, families_b, wordings_a, wordings_b}`` per split (a wording: family, template, synonym)."""
    rng = np.random.default_rng(seed)
    splits, next_id = {}, 0
    for split, n_pairs in sizes.items():
        rows = []
        for _ in range(n_pairs):
            rows.append(_pair(rng, split, first_id=next_id))
            next_id += 2
        splits[split] = rows
    return splits


def compatibility(stances_a: dict[str, int], stances_b: dict[str, int]) -> tuple[float, str]:
    """The documented gold score and the deciding topic, over the topics both profiles state."""
    shared = [t for t in TOPICS if t in stances_a and t in stances_b]
    if not shared:
        raise ValueError("profiles share no topic")
    agree = {t: 1 - abs(stances_a[t] - stances_b[t]) / 4 for t in shared}
    score = sum(TOPIC_WEIGHTS[t] * agree[t] for t in shared) / sum(TOPIC_WEIGHTS[t] for t in shared)
    deciding = max(shared, key=lambda t: (TOPIC_WEIGHTS[t] * (1 - agree[t]), TOPIC_WEIGHTS[t], -TOPICS.index(t)))
    return float(score), deciding


def _pair(rng, split: str, *, first_id: int) -> dict:
    n_shared = int(rng.choice(SHARED_TOPICS))
    shared = [str(t) for t in rng.choice(TOPICS, size=n_shared, replace=False)]
    topics_a = _topics(rng, shared, avoid=[])
    topics_b = _topics(rng, shared, avoid=topics_a)
    stances_a = {t: _stance(rng) for t in topics_a}
    stances_b = {t: _stance(rng) for t in topics_b}
    score, category = compatibility(stances_a, stances_b)
    words_a = {t: _wording(rng, split, t) for t in topics_a}
    words_b = {}
    for t in topics_b:
        if t in stances_a and (stances_a[t] > 0) != (stances_b[t] > 0) and rng.random() < SAME_WORDING_P:
            words_b[t] = words_a[t]  # same words, other polarity: the trap for word matching
        elif t in stances_a and (stances_a[t] > 0) == (stances_b[t] > 0):
            words_b[t] = _wording(rng, split, t, unlike=words_a[t])  # same side, other words
        else:
            words_b[t] = _wording(rng, split, t)
    return {
        "text_a": _profile_text(rng, stances_a, words_a), "text_b": _profile_text(rng, stances_b, words_b),
        "score": score, "category": category, "group": f"{first_id}-{first_id + 1}",
        "profile_a": first_id, "profile_b": first_id + 1, "shared": sorted(shared, key=TOPICS.index),
        "stances_a": stances_a, "stances_b": stances_b,
        "families_a": sorted({w[0] for w in words_a.values()}), "families_b": sorted({w[0] for w in words_b.values()}),
        "wordings_a": {t: list(w) for t, w in words_a.items()}, "wordings_b": {t: list(w) for t, w in words_b.items()},
    }


def _topics(rng, shared: list[str], *, avoid: list[str]) -> list[str]:
    """The shared topics plus, sometimes, one private topic (not in ``avoid``)."""
    others = [t for t in TOPICS if t not in shared and t not in avoid]
    extra = [str(rng.choice(others))] if others and rng.random() < PRIVATE_TOPIC_P else []
    return sorted([*shared, *extra], key=TOPICS.index)


def _stance(rng) -> int:
    return int(rng.choice(STANCES, p=STANCE_P))


def _wording(rng, split: str, topic: str, unlike: tuple | None = None) -> tuple[str, int, str]:
    """(family, template index, synonym) from the split's own families; ``unlike``: another family
    and another synonym than that wording."""
    families = [f for f in SPLIT_FAMILIES[split] if unlike is None or f != unlike[0]]
    family = str(rng.choice(families))
    index = int(rng.integers(len(FAMILIES[family])))
    slot = "{vp}" if "{vp}" in FAMILIES[family][index][0] else "{np}"
    synonyms = VERB_PHRASES[topic] if slot == "{vp}" else NOUN_PHRASES[topic]
    synonyms = [s for s in synonyms if unlike is None or s != unlike[2]]
    return family, index, str(rng.choice(synonyms))


def stance_sentence(stance: int, wording: tuple[str, int, str], *, modifier: tuple[str, str] = ("", "")) -> str:
    """The sentence for a stance in a wording, with an optional (prefix, suffix) modifier."""
    family, index, synonym = wording
    template = FAMILIES[family][index][0 if stance > 0 else 1]
    core = template.replace("{vp}", synonym).replace("{np}", synonym)
    core = core[0].upper() + core[1:]
    prefix, suffix = modifier
    if prefix and not core.startswith(("I ", "I'")):
        core = core[0].lower() + core[1:]
    return prefix + core + suffix


def _profile_text(rng, stances: dict[str, int], words: dict[str, tuple]) -> str:
    sentences = []
    for topic, stance in stances.items():
        pool = STRONG if abs(stance) == 2 else MILD
        where = "prefix" if rng.random() < PREFIX_P else "suffix"
        choice = str(rng.choice(pool[where]))
        modifier = (choice, "") if where == "prefix" else ("", choice)
        sentences.append(stance_sentence(stance, words[topic], modifier=modifier))
    if rng.random() < FILLER_P:
        template = str(rng.choice(FILLER["templates"]))
        sentences.append(template.format(**{k: str(rng.choice(FILLER[k])) for k in ("job", "city", "hobby")}))
    order = rng.permutation(len(sentences))
    return str(rng.choice(LEAD_INS)) + " ".join(sentences[i] for i in order)


def strip_lead_in(text: str) -> str:
    """The profile text without its lead-in (for counting distinct texts)."""
    for lead in LEAD_INS[1:]:
        if text.startswith(lead):
            return text[len(lead):]
    return text
