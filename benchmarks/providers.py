"""What the remote providers send: model calls and tokens per 100 documents (OpenAI entities), and
the pages AWS Textract would be sent (`--only textract` for that part alone: no Redis, no peer).

Textract: the pages of every PDF of the corpus that `ocr: auto` and `ocr: textract` send (the same
page choice the extract stage makes, `pipeline.extract.textract.plan_pdf`), out of all pages, with
the estimated cost at `textract_price_per_page`. Nothing is sent anywhere: the choice is local.

OpenAI:

Two sets of documents, read in place: the court e-mails of the corpus (nef/*.txt, 63 of them) and
its appellate opinions (documents/ca*.pdf, text layers, 13), figures scaled to 100 documents. Each
set is extracted once, then its entities are asked of a model through the real openai SDK, pointed at the local OpenAI peer of the
tests (tests/openai_peer.py) with OPENAI_BASE_URL, the shared limits and the answer cache in a
throwaway redis-server:

- unpacked:      one call per chunk of the chunk stage's size (``chunk_target_chars``, about
                 375 tokens of text), as a provider without packing would send,
- packed:        pieces packed up to ``openai_chunk_tokens`` (default 3000) tokens,
- packed again:  the same documents a second time: every answer from the cache.

Tokens are what the peer reports: the characters of the instructions plus the text, and of the
answer, divided by 4 (the estimate the provider packs with; a real model's tokenizer differs by
some percent, and a real model's answers are longer or shorter than the peer's rule-made ones).
The estimated cost uses the default prices (``openai_price_in`` / ``openai_price_out``).

Usage: python benchmarks/providers.py [--json] [--only openai|textract]
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.batches import start_redis  # noqa: E402
from legaldoc.config import load_settings  # noqa: E402
from legaldoc.pipeline.entities.llm import PROMPT_OVERHEAD_TOKENS, ModelUsage  # noqa: E402
from legaldoc.pipeline.extract import extract  # noqa: E402
from legaldoc.pipeline.extract.textract import OcrMode, plan_pdf  # noqa: E402
from legaldoc.services.openai_entities import model_entity_provider  # noqa: E402
from legaldoc.services.wiring import Runtime  # noqa: E402
from tests.openai_peer import running_peer  # noqa: E402

CORPUS = Path(__file__).resolve().parents[2] / "shared" / "corpus"
SETS = {"court e-mails": sorted((CORPUS / "nef").glob("*.txt")), "opinions": sorted((CORPUS / "documents").glob("ca*.pdf"))}


def textract_pages(corpus: Path = CORPUS / "documents") -> dict[str, Any]:
    """Pages sent to Textract per mode over the corpus's PDFs, with the files they come from."""
    settings = load_settings()
    total = 0
    sent = {OcrMode.AUTO: 0, OcrMode.TEXTRACT: 0}
    files: dict[str, dict[str, int]] = {}
    unreadable = []
    for path in sorted(corpus.glob("*.pdf")):
        data = path.read_bytes()
        try:
            counts = {mode: plan_pdf(data, settings, mode) for mode in sent}
        except Exception:  # noqa: BLE001 - a broken PDF fails as DATA in the pipeline; here it is only counted
            unreadable.append(path.name)
            continue
        pages = counts[OcrMode.AUTO][1]
        total += pages
        for mode, (chosen, _) in counts.items():
            sent[mode] += len(chosen)
        if any(chosen for chosen, _ in counts.values()):
            files[path.name] = {"pages": pages, **{mode.value: len(chosen) for mode, (chosen, _) in counts.items()}}
    price = settings.textract_price_per_page
    return {"pages": total, "unreadable": unreadable,
            "sent": {mode.value: n for mode, n in sent.items()},
            "estimated_cost_usd": {mode.value: round(n * price, 4) for mode, n in sent.items()},
            "price_per_page": price, "files_with_pages_sent": files}  # fmt: skip


def measure(texts: list[str], settings, cache) -> ModelUsage:
    provider = model_entity_provider(settings, "openai", cache)
    total = ModelUsage()
    for text in texts:
        total.add(provider.run(text).usage)
    return total


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--json", action="store_true")
    parser.add_argument("--only", choices=["openai", "textract"])
    args = parser.parse_args()
    results: dict[str, dict] = {}
    if args.only != "openai":
        results["textract"] = textract_pages()
    with tempfile.TemporaryDirectory() as folder:
        sets = {} if args.only == "textract" else SETS
        redis_process, redis_url = start_redis(Path(folder))
        try:
            base = load_settings(data_dir=Path(folder) / ".legaldoc", redis_url=redis_url, openai_model="peer-small",
                                 openai_request_limit="100000/minute", openai_token_limit="100000000/minute")  # fmt: skip
            unpacked = base.model_copy(update={"openai_chunk_tokens": base.chunk_target_chars // 4 + PROMPT_OVERHEAD_TOKENS})
            with running_peer() as peer:
                os.environ["OPENAI_BASE_URL"], os.environ["OPENAI_API_KEY"] = peer.url, "sk-benchmark"
                peer.invent = False
                for set_name, sources in sets.items():
                    texts = [extract(path.read_bytes(), str(path), base, None).text for path in sources]
                    rows = {
                        "unpacked": measure(texts, unpacked, None),
                        "packed": measure(texts, base, Runtime(base).cache),
                        "packed again (cache)": measure(texts, base, Runtime(base).cache),
                    }
                    scale = 100 / len(texts)
                    results[set_name] = {"documents": len(texts), "characters": sum(map(len, texts)), "per_100_documents": {
                        name: {"calls": round(u.calls * scale), "cached": round(u.cached * scale),
                               "tokens_in": round(u.tokens_in * scale), "tokens_out": round(u.tokens_out * scale),
                               "cost_usd": round(u.cost(base.openai_price_in, base.openai_price_out) * scale, 4)}
                        for name, u in rows.items()}}  # fmt: skip
        finally:
            redis_process.terminate()
            redis_process.wait(10)
    if args.json:
        print(json.dumps(results))
        return
    for set_name, found in results.items():
        if set_name == "textract":
            print(f"Textract over the corpus's PDFs: {found['pages']} pages")
            for mode, count in found["sent"].items():
                print(f"  ocr: {mode:<8} sends {count} pages, estimated ${found['estimated_cost_usd'][mode]:.4f}")
            for name, row in found["files_with_pages_sent"].items():
                print(f"    {name}: {row}")
            continue
        print(f"{set_name}: {found['documents']} documents, {found['characters']:,} characters; per 100 documents:")
        print(f"  {'':22} {'calls':>6} {'cached':>7} {'tokens in':>10} {'tokens out':>11} {'cost USD':>9}")
        for name, r in found["per_100_documents"].items():
            print(f"  {name:22} {r['calls']:>6} {r['cached']:>7} {r['tokens_in']:>10} {r['tokens_out']:>11} {r['cost_usd']:>9.4f}")


if __name__ == "__main__":
    main()
