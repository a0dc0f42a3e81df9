"""Tool throughput through the API vs the libraries called directly, in the same run.

- PDF: pages/s of POST /api/pdf/extract vs pypdf's extract_text() on the same 100-page
  file (target >= 0.8x).
- Transcription: real-time factor of POST /api/transcribe vs faster-whisper called
  directly (same model, threads and settings) on the same recording (the 6.4 s test
  clip, five times per run: a repeated clip would trigger whisper's random temperature
  fallback and make the work differ run to run); API overhead = API time / direct
  time - 1 (target <= 10%).
The server runs as `make run` runs it (Celery eager). Each phase alternates its two
sides; PDF and whisper phases are kept apart, since CTranslate2's threads keep spinning
for a moment after a transcription. Medians reported.

    .venv/bin/python bench/tools.py [--runs 3] [--output bench/results/tools.md]
"""

from __future__ import annotations

import argparse
import io
import os
import statistics
import sys
import time
import wave
from pathlib import Path

import httpx
from measure import report  # bench/ is the script's own directory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")


CLIPS_PER_RUN = 5


def timed(call: object) -> float:
    started = time.perf_counter()
    call()  # type: ignore[operator]
    return time.perf_counter() - started


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from faster_whisper import WhisperModel
    from pypdf import PdfReader

    from chat.tests.live import LiveServer
    from tools.tests.fixtures import text_pdf
    from tools.transcribe import whisper_model_path

    sentence = "GhostGPT reads every page of this report about ghost ships and the sea. "
    pdf = text_pdf([f"Page {n}. " + sentence * 3 for n in range(100)])
    audio_path = str(ROOT / "tools" / "tests" / "data" / "speech.wav")
    audio = Path(audio_path).read_bytes()
    threads = os.cpu_count() or 2
    compute, beam = settings.TOOLS["WHISPER_COMPUTE_TYPE"], settings.TOOLS["WHISPER_BEAM_SIZE"]
    model = WhisperModel(whisper_model_path(), device="cpu", compute_type=compute, cpu_threads=threads)
    with wave.open(audio_path) as reader:
        duration = CLIPS_PER_RUN * reader.getnframes() / reader.getframerate()

    def pdf_direct() -> None:
        reader = PdfReader(io.BytesIO(pdf))
        assert len([page.extract_text() for page in reader.pages]) == 100

    def whisper_direct() -> None:
        for _ in range(CLIPS_PER_RUN):
            segments, _ = model.transcribe(audio_path, beam_size=beam, language="en")
            assert " ".join(s.text for s in segments)

    server = LiveServer(env={"GHOSTGPT_TOOLS_RATE_ANONYMOUS": "1000", "DATABASE_URL": ""})
    session = httpx.Client(base_url=server.base_url, timeout=300)  # keep-alive, as real clients
    try:

        def pdf_api() -> None:
            reply = session.post("/api/pdf/extract", files={"file": ("r.pdf", pdf)}, timeout=300)
            assert reply.status_code == 200 and reply.json()["pages"] == 100, reply.text

        def whisper_api() -> None:
            for _ in range(CLIPS_PER_RUN):
                reply = session.post("/api/transcribe", files={"file": ("a.wav", audio)}, timeout=300)
                assert reply.status_code == 200 and reply.json()["text"], reply.text

        runs: dict[str, list[float]] = {"pdf_direct": [], "pdf_api": [], "whisper_direct": [], "whisper_api": []}
        phases = [
            (("pdf_direct", pdf_direct), ("pdf_api", pdf_api)),
            (("whisper_direct", whisper_direct), ("whisper_api", whisper_api)),
        ]
        for phase in phases:
            for _, call in phase:  # warm up: imports, the model in the server process
                call()
            for _ in range(args.runs):
                for name, call in phase:
                    runs[name].append(timed(call))
    finally:
        session.close()
        server.stop()

    median = {name: statistics.median(values) for name, values in runs.items()}
    pdf_ratio = median["pdf_direct"] / median["pdf_api"]
    overhead = median["whisper_api"] / median["whisper_direct"] - 1
    table = "\n".join(
        [
            f"{os.cpu_count()} CPUs, medians of {args.runs} alternating runs",
            "",
            "| work | direct | through the API | result |",
            "|---|---|---|---|",
            f"| PDF, 100 pages | {100 / median['pdf_direct']:.1f} pages/s | {100 / median['pdf_api']:.1f} pages/s "
            f"| {pdf_ratio:.3f}x (target >= 0.8x) |",
            f"| transcription, {CLIPS_PER_RUN} x {duration / CLIPS_PER_RUN:.1f} s of speech (tiny.en int8) "
            f"| RTF {median['whisper_direct'] / duration:.3f} | RTF {median['whisper_api'] / duration:.3f} "
            f"| overhead {overhead * 100:+.1f}% (target <= 10%) |",
        ]
    )
    return report(table, args.output)


if __name__ == "__main__":
    raise SystemExit(main())
