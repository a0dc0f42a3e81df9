"""Transcription quality and speed: word error rate on English and Russian sentences spoken
by espeak-ng, and the real-time factor, for the multilingual Whisper base GhostGPT ships
(tools/whisper_models.py, as the server runs it: its compute type and beam, the language
picked as tools.transcribe.pick_language picks it with the sentence's language as the page's
hint) against the English-only tiny.en it shipped before (the baseline, as it ran then:
int8, greedy), in the same run on the same audio. The sentences are synthesised here with
`espeak-ng` (Debian's package: `make bench` installs it).

    .venv/bin/python bench/transcribe.py [--output bench/results/transcribe.md]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from measure import report  # bench/ is the script's own directory

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
os.environ.setdefault("DJANGO_SETTINGS_MODULE", "ghostgpt.settings")

SENTENCES = {
    "en": [
        "The quick brown fox jumps over the lazy dog.",
        "Ghost ships sail the northern sea at midnight.",
        "Please book a table for two at seven o'clock tonight.",
        "The weather in London will be cloudy with light rain tomorrow.",
        "Our quarterly revenue grew by twelve percent this year.",
        "Turn left at the next traffic light and park near the station.",
    ],
    "ru": [
        "Привет. Какая сегодня погода в Москве?",
        "Завтра мы поедем на море.",
        "Пожалуйста, закажите столик на двоих на семь часов.",
        "Поезд в Санкт-Петербург отправляется в полдень.",
        "Мой брат работает врачом в большой больнице.",
        "Вечером мы смотрели интересный фильм о космосе.",
    ],
}


def errors(reference: str, hypothesis: str) -> tuple[int, int]:
    """(word edits, reference words), by the suite's own word error rate."""
    from tools.tests.test_transcribe import word_error_rate, words

    total = len(words(reference))
    return round(word_error_rate(reference, hypothesis) * total), total


def speak(folder: Path) -> list[tuple[str, str, Path]]:
    clips = []
    for language, sentences in SENTENCES.items():
        for n, sentence in enumerate(sentences):
            path = folder / f"{language}-{n}.wav"
            subprocess.run(["espeak-ng", "-v", language, "-s", "150", "-w", str(path), sentence], check=True)
            clips.append((language, sentence, path))
    return clips


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--output", type=Path)
    args = parser.parse_args()

    import django

    django.setup()
    from django.conf import settings
    from faster_whisper import WhisperModel
    from faster_whisper.audio import decode_audio

    from tools.transcribe import pick_language
    from tools.whisper_models import model_path

    threads = os.cpu_count() or 2
    sides = [
        ("tiny.en, int8, greedy (before)", "tiny.en", "int8", 1),
        (
            f"base, {settings.TOOLS['WHISPER_COMPUTE_TYPE']}, beam {settings.TOOLS['WHISPER_BEAM_SIZE']} (shipped)",
            "base",
            settings.TOOLS["WHISPER_COMPUTE_TYPE"],
            settings.TOOLS["WHISPER_BEAM_SIZE"],
        ),
        ("base, int8, beam 5", "base", "int8", 5),
    ]
    with tempfile.TemporaryDirectory() as folder:
        clips = [(lang, text, decode_audio(str(path))) for lang, text, path in speak(Path(folder))]
        audio_seconds = {
            lang: sum(len(audio) for language, _, audio in clips if language == lang) / 16000 for lang in SENTENCES
        }
        rows = []
        for label, name, compute, beam in sides:
            model = WhisperModel(str(model_path(name)), device="cpu", compute_type=compute, cpu_threads=threads)
            tally = {"en": [0, 0], "ru": [0, 0]}
            detected_right = {"en": 0, "ru": 0}
            seconds = {"en": 0.0, "ru": 0.0}
            for language, text, audio in clips:
                started = time.perf_counter()
                chosen = pick_language(model, audio, None, language)
                detected_right[language] += chosen == language
                segments, _ = model.transcribe(audio, language=chosen, beam_size=beam)
                heard = " ".join(s.text for s in segments)
                seconds[language] += time.perf_counter() - started
                edits, total = errors(text, heard)
                tally[language][0] += edits
                tally[language][1] += total
            rtf = {lang: seconds[lang] / audio_seconds[lang] for lang in seconds}
            rows.append((label, tally, detected_right, rtf))
            del model
    base_en = rows[0][1]["en"][0] / rows[0][1]["en"][1]
    lines = [
        f"Transcription: {len(clips)} espeak-ng sentences ({sum(audio_seconds.values()):.1f} s of audio), "
        f"{threads} threads; real-time factor = seconds of work per second of audio (detection included)",
        "",
        "| model | WER English | WER Russian | language right (en/ru) | RTF English | RTF Russian "
        "| English WER vs before |",
        "|---|---|---|---|---|---|---|",
    ]
    per_language = len(SENTENCES["en"])
    for label, tally, right, rtf in rows:
        en, ru = tally["en"][0] / tally["en"][1], tally["ru"][0] / tally["ru"][1]
        ratio = f"{en / base_en:.2f}x" if base_en else "-"
        lines.append(
            f"| {label} | {en:.3f} | {ru:.3f} | {right['en']}/{per_language} {right['ru']}/{per_language} "
            f"| {rtf['en']:.3f} | {rtf['ru']:.3f} | {ratio} |"
        )
    return report("\n".join(lines), args.output)


if __name__ == "__main__":
    sys.exit(main())
