"""The ``dating-v1`` dataset (version 1, kept so that older results can be reproduced; the default
``dating`` is version 2 in ``harness/dating.py``): a deterministic, seedable generator of dating-profile pairs.

How it is generated
-------------------
* Seven categories (kids, smoking, religion, pets, nightlife, activity, travel). Each has nine
  *frames*: a pair of sentences that share most of their words but take opposite stances
  ("I want to have children one day." / "I do not want to have children, ever."), and three
  *neutral* sentences ("I'm undecided about having kids.").
* Phrasings are held out: frames 0-4 are used only in train, 5-6 only in validation, 7-8 only
  in test; neutral sentence k only in split k. The test split therefore measures whether a model
  generalises to wordings it never saw.
* Profiles are held out too: each split draws pairs only from its own profiles (ids are
  disjoint across splits). A profile takes a stance on every category: pro (45%), anti (45%)
  or neutral (10%).
* A pair picks a category and two profiles of the split. Its gold score follows the stances:
  same stance 1.0 (compatible), opposite 0.0 (incompatible), one neutral 0.4 (lukewarm, below
  the 0.5 compatibility threshold); two neutral profiles are not paired.
* The wording realises the ADR-001 phenomenon: incompatible pairs reuse one frame (same words,
  opposite stance) 80% of the time; compatible pairs always use two *different* frames (same
  stance, different words). A stock embedding model that mostly matches words therefore scores
  incompatible pairs higher: its baseline Spearman is negative.
* A neutral-meaning lead-in ("Honestly, ", "For me, ", ...) is chosen per sentence, so equal
  frames rarely give equal strings.
"""

from __future__ import annotations

import numpy as np

SPLIT_SIZES = {"train": 2000, "validation": 500, "test": 500}
PROFILES_PER_SPLIT = {"train": 300, "validation": 80, "test": 80}
FRAMES_BY_SPLIT = {"train": range(0, 5), "validation": range(5, 7), "test": range(7, 9)}
NEUTRAL_BY_SPLIT = {"train": 0, "validation": 1, "test": 2}
STANCE_P = {"pro": 0.45, "anti": 0.45, "neutral": 0.10}
SAME_FRAME_P = 0.8  # share of incompatible pairs that reuse one frame
SCORES = {"same": 1.0, "opposite": 0.0, "neutral": 0.4}
LEAD_INS = ["", "Honestly, ", "To be upfront, ", "Just so you know, ", "For me, ", "One thing about me: "]

# category -> (frames as (pro, anti), neutral sentences)
CATEGORIES: dict[str, tuple[list[tuple[str, str]], list[str]]] = {
    "kids": ([
        ("I want to have children one day.", "I do not want to have children, ever."),
        ("Kids are definitely in my future.", "Kids are definitely not in my future."),
        ("I'm looking for someone who wants a family.", "I'm looking for someone who doesn't want a family."),
        ("Becoming a parent is my biggest dream.", "Becoming a parent has never been a dream of mine."),
        ("I would love to raise a few little ones.", "I would hate to raise little ones."),
        ("Starting a family soon is a must for me.", "Starting a family is a dealbreaker for me."),
        ("I see myself as a mom or dad someday.", "I can't see myself as a mom or dad, ever."),
        ("Having babies is part of my life plan.", "Having babies is not part of my life plan."),
        ("I hope to fill a house with children.", "I hope to keep my house free of children."),
    ], ["I'm undecided about having kids.", "Not sure yet whether I want a family.",
        "Children? Maybe, maybe not."]),
    "smoking": ([
        ("I smoke cigarettes every day.", "I never smoke cigarettes."),
        ("I'm a smoker and fine with smoke.", "I'm a non-smoker and hate smoke."),
        ("A cigarette after dinner is my ritual.", "A cigarette after dinner makes me leave the table."),
        ("My partner can smoke around me, no problem.", "My partner can never smoke around me."),
        ("I enjoy a cigar or a vape now and then.", "I can't stand cigars or vapes."),
        ("Smoking is part of my social life.", "Smoking has no part in my life."),
        ("I light up on every break at work.", "I have never lit up in my life."),
        ("Tobacco is one of my small pleasures.", "Tobacco is something I find disgusting."),
        ("I'm happy to date someone who smokes.", "I won't date someone who smokes."),
    ], ["I only smoke at the occasional party.", "I quit smoking but don't mind it.",
        "Smoking isn't a big deal either way for me."]),
    "religion": ([
        ("My faith is the center of my life.", "Faith plays no role in my life."),
        ("I go to church every Sunday.", "I never go to church."),
        ("I'm looking for a religious partner.", "I'm looking for a partner who isn't religious."),
        ("Prayer is part of my daily routine.", "Prayer is not something I do."),
        ("I believe in God with all my heart.", "I don't believe in God at all."),
        ("Raising kids in the faith matters to me.", "Raising kids without religion matters to me."),
        ("Spirituality guides every decision I make.", "I make decisions without any spirituality."),
        ("I'm a devout believer.", "I'm a committed atheist."),
        ("Religious holidays are sacred to me.", "Religious holidays mean nothing to me."),
    ], ["I'm spiritual but not into organized religion.", "Faith is a private thing I rarely discuss.",
        "I'm still figuring out what I believe."]),
    "pets": ([
        ("I love dogs and have two at home.", "I don't like dogs and won't have one at home."),
        ("My cat is my best friend.", "Cats make me sneeze, so I avoid them."),
        ("I want a home full of pets.", "I want a home without any pets."),
        ("Animals sleep in my bed every night.", "Animals never sleep in my bed."),
        ("I volunteer at the animal shelter on weekends.", "I'd never spend weekends around shelter animals."),
        ("My future partner must be a pet lover.", "My future partner must not have pets."),
        ("Puppies and kittens make me happy.", "Puppies and kittens make me uncomfortable."),
        ("Walking my dog is the best part of my day.", "Walking a dog sounds like the worst part of a day."),
        ("I would adopt another rescue pet tomorrow.", "I would never adopt a pet."),
    ], ["Pets are fine, I just don't need one.", "I like animals at a distance.",
        "A small fish tank is about my limit."]),
    "nightlife": ([
        ("I love going out to clubs on weekends.", "I hate going out to clubs on weekends."),
        ("Dancing until 3am is my idea of fun.", "Dancing until 3am is my idea of torture."),
        ("I'm a night owl who lives for parties.", "I'm an early bird who avoids parties."),
        ("Bars and live music every Friday for me.", "No bars or loud music on Fridays for me."),
        ("My ideal date is a crowded cocktail bar.", "My ideal date is anywhere but a crowded bar."),
        ("I'm always the last to leave the party.", "I'm always the first to leave the party."),
        ("Festivals and raves are my happy place.", "Festivals and raves are my nightmare."),
        ("Saturday night means going out with friends.", "Saturday night means staying in alone."),
        ("I need someone who loves nightlife.", "I need someone who avoids nightlife."),
    ], ["A night out once a month is plenty.", "I can enjoy a party or a quiet night.",
        "Going out is fine if it ends early."]),
    "activity": ([
        ("I run every morning before work.", "I never run, not even to catch a bus."),
        ("I'm training for my next marathon.", "I'm not training for anything, ever."),
        ("Hiking and climbing fill my weekends.", "Hiking and climbing are not for me."),
        ("I hit the gym six days a week.", "I haven't been to a gym in years."),
        ("An active partner who works out is a must.", "A partner obsessed with working out is a turn-off."),
        ("I'd rather cycle 50 miles than watch TV.", "I'd rather watch TV than cycle anywhere."),
        ("Sports are a huge part of my life.", "Sports are no part of my life."),
        ("I'm happiest when I'm sweating outdoors.", "I'm happiest when I'm resting on the couch."),
        ("Fitness is my top priority.", "Fitness is my lowest priority."),
    ], ["I stay moderately active.", "A walk now and then keeps me happy.",
        "Yoga once a week is enough exercise for me."]),
    "travel": ([
        ("I travel abroad every chance I get.", "I never travel abroad if I can help it."),
        ("Backpacking across continents is my passion.", "Backpacking across continents sounds exhausting."),
        ("My passport is full of stamps.", "My passport is empty and I like it that way."),
        ("I want a partner to explore the world with.", "I want a partner who stays close to home."),
        ("Long flights to new countries excite me.", "Long flights to new countries stress me out."),
        ("I plan my next trip as soon as I get home.", "I never plan trips, home is where I'm happy."),
        ("Trying food in foreign cities is my favorite hobby.", "Trying food in foreign cities is not my thing."),
        ("I'd move abroad for adventure.", "I'd never move abroad."),
        ("Road trips with no plan sound perfect.", "Road trips with no plan sound awful."),
    ], ["A trip once a year is enough for me.", "I like travel but I'm a homebody too.",
        "Short getaways suit me better than big trips."]),
}


def generate(*, seed: int = 0, sizes: dict[str, int] = SPLIT_SIZES) -> dict[str, list[dict]]:
    """Rows ``{text_a, text_b, score, category, profile_a, profile_b, frame_a, frame_b}`` per split."""
    rng = np.random.default_rng(seed)
    splits, first_id = {}, 0
    for split, n_pairs in sizes.items():
        profiles = _draw_profiles(rng, first_id=first_id, count=PROFILES_PER_SPLIT[split])
        first_id += PROFILES_PER_SPLIT[split]
        splits[split] = [_draw_pair(rng, profiles, split) for _ in range(n_pairs)]
    return splits


def _draw_profiles(rng, *, first_id: int, count: int) -> list[dict]:
    stances, probs = list(STANCE_P), list(STANCE_P.values())
    return [{"id": first_id + i, "stance": {c: stances[rng.choice(3, p=probs)] for c in CATEGORIES}}
            for i in range(count)]


def _draw_pair(rng, profiles: list[dict], split: str) -> dict:
    category = list(CATEGORIES)[rng.integers(len(CATEGORIES))]
    while True:
        a, b = (profiles[i] for i in rng.choice(len(profiles), size=2, replace=False))
        sa, sb = a["stance"][category], b["stance"][category]
        if not (sa == sb == "neutral"):
            break
    frames = list(FRAMES_BY_SPLIT[split])
    fa = int(rng.choice(frames))
    if sa == sb:  # compatible: same stance in different words
        fb = int(rng.choice([f for f in frames if f != fa]))
        score = SCORES["same"]
    elif "neutral" in (sa, sb):
        fb = int(rng.choice(frames))
        score = SCORES["neutral"]
    else:  # incompatible: opposite stance, mostly in the same words
        fb = fa if rng.random() < SAME_FRAME_P else int(rng.choice([f for f in frames if f != fa]))
        score = SCORES["opposite"]
    return {
        "text_a": _sentence(rng, category, sa, fa, split), "text_b": _sentence(rng, category, sb, fb, split),
        "score": score, "category": category, "profile_a": a["id"], "profile_b": b["id"],
        "frame_a": -1 if sa == "neutral" else fa, "frame_b": -1 if sb == "neutral" else fb,
    }


def _sentence(rng, category: str, stance: str, frame: int, split: str) -> str:
    frames, neutral = CATEGORIES[category]
    if stance == "neutral":
        text = neutral[NEUTRAL_BY_SPLIT[split]]
    else:
        text = frames[frame][0 if stance == "pro" else 1]
    lead = LEAD_INS[rng.integers(len(LEAD_INS))]
    if lead and not text.startswith(("I ", "I'")):
        text = text[0].lower() + text[1:]
    return lead + text


def strip_lead_in(text: str) -> str:
    """The underlying sentence without its lead-in (lower-cased first letter restored)."""
    for lead in LEAD_INS[1:]:
        if text.startswith(lead):
            text = text[len(lead):]
            return text[0].upper() + text[1:]
    return text
