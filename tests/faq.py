"""A small FAQ chatbot corpus for the confidence / fallback tests: a shop's questions and answers.

Each of the 24 topics has one answer, three training phrasings of its question and one held-out
rewording; eight held-out questions are out of scope (their answers are not in the training data), so a
bot trained on the FAQ is right on some held-out questions and confidently or hesitantly wrong on others.

    train, heldout = write_faq(tmp_path)                 # faq.jsonl (4 copies, as tiny_runs writes pairs), heldout.tsv
    run = train_run(tmp_path / "run", faq_config(train)) # a seq2seq GRU chatbot, a few seconds on a CPU
"""

from __future__ import annotations

from pathlib import Path

from tiny_runs import SEQ2SEQ, config_for, write_pairs_corpus

# (answer, three training questions, one held-out rewording)
TOPICS = [
    ("we are open from nine to five", ["when are you open", "what are your opening hours", "what time do you open"],
     "when do you open"),
    ("we are closed on sundays", ["are you open on sunday", "do you open on sundays", "is the shop open on sunday"],
     "are you open sundays"),
    ("we are on the high street", ["where are you", "where is the shop", "what is your address"],
     "where is your shop"),
    ("call us on the shop phone", ["what is your phone number", "how can i call you", "can i phone you"],
     "what is the phone number"),
    ("email us at the help desk", ["what is your email", "how can i email you", "can i send you an email"],
     "what is the email"),
    ("delivery takes three days", ["how long is delivery", "how long does delivery take", "when will it arrive"],
     "how long will delivery take"),
    ("delivery is free over fifty pounds", ["is delivery free", "how much is delivery", "do you charge for delivery"],
     "is the delivery free"),
    ("you can return items within thirty days", ["can i return an item", "what is your returns policy",
                                                 "how do i return something"], "can i return something"),
    ("refunds take five days", ["when will i get my refund", "how long do refunds take", "where is my refund"],
     "how long is a refund"),
    ("we take cards and cash", ["how can i pay", "do you take cards", "what payment do you take"],
     "can i pay by card"),
    ("yes we ship abroad", ["do you ship abroad", "do you deliver abroad", "can you ship to france"],
     "do you deliver to france"),
    ("track your order on our site", ["where is my order", "how do i track my order", "can i track my parcel"],
     "how can i track my order"),
    ("yes gift cards are on sale", ["do you sell gift cards", "can i buy a gift card", "have you got gift cards"],
     "can i get a gift card"),
    ("sign up on our site", ["how do i make an account", "how do i sign up", "can i create an account"],
     "how can i sign up"),
    ("reset it from the login page", ["i forgot my password", "how do i reset my password",
                                      "i can not log in"], "how can i reset my password"),
    ("yes there is a car park", ["is there parking", "where can i park", "do you have a car park"],
     "can i park there"),
    ("yes dogs are welcome", ["can i bring my dog", "are dogs allowed", "is the shop dog friendly"],
     "are dogs welcome"),
    ("the sale starts in june", ["when is the sale", "do you have a sale", "when does the sale start"],
     "when is your sale"),
    ("yes we have a student discount", ["do you have a student discount", "are there discounts for students",
                                        "can students get a discount"], "is there a student discount"),
    ("every item has a one year warranty", ["is there a warranty", "how long is the warranty",
                                            "do items have a warranty"], "what is the warranty"),
    ("we do not sell second hand items", ["do you sell used items", "do you sell second hand",
                                          "have you got used things"], "do you sell used things"),
    ("yes we wrap gifts for free", ["do you wrap gifts", "can you gift wrap it", "is gift wrapping free"],
     "can you wrap a gift"),
    ("ask for a job at the till", ["are you hiring", "can i work for you", "do you have jobs"],
     "are there any jobs"),
    ("our manager is sam", ["who is the manager", "who runs the shop", "can i talk to the manager"],
     "who is your manager"),
]

# held-out questions the FAQ does not answer, with what a right answer would say
OUT_OF_SCOPE = [
    ("do you sell cars", "no we do not sell cars"),
    ("what is the weather like", "i can not tell the weather"),
    ("can you fix my bike", "we do not repair bikes"),
    ("do you sell fresh fish", "we do not sell food"),
    ("what is your favourite colour", "i do not have one"),
    ("can i book a table", "we are not a restaurant"),
    ("how old is the shop", "the shop opened in nineteen ninety"),
    ("do you have a cafe", "there is no cafe here"),
]


def faq_pairs() -> list[tuple[str, str]]:
    """The training (question, answer) pairs: three phrasings per topic."""
    return [(q, answer) for answer, questions, _ in TOPICS for q in questions]


def heldout_pairs() -> list[tuple[str, str]]:
    """The held-out pairs: one rewording per topic, then the out-of-scope questions."""
    return [(reworded, answer) for answer, _, reworded in TOPICS] + OUT_OF_SCOPE


def write_faq(folder: Path) -> tuple[Path, Path]:
    """faq.jsonl (the training pairs, four copies: a contiguous split trains on all of them) and
    heldout.tsv (question<TAB>answer)."""
    folder.mkdir(parents=True, exist_ok=True)
    train = write_pairs_corpus(folder / "faq.jsonl", faq_pairs(), copies=4)
    heldout = folder / "heldout.tsv"
    heldout.write_text("".join(f"{q}\t{a}\n" for q, a in heldout_pairs()), encoding="utf-8")
    return train, heldout


def faq_config(corpus: Path, **train: object) -> dict:
    """A small seq2seq GRU chatbot config that learns the FAQ in a few seconds on a CPU."""
    model = dict(SEQ2SEQ, n_embd=48, hidden_size=64)
    return config_for(corpus, model, "pairs", **{"max_steps": 300, "lr": 1e-2, "warmup_steps": 10,
                                                 "batch_size": 16, **train})
