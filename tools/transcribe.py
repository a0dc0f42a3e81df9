"""Transcription with faster-whisper (CTranslate2, int8 on CPU); audio decoded by PyAV.

The model (tools/whisper_models.py: multilingual Whisper base by default) loads once per
process, on first use — in a Celery prefork worker that is after the fork, so children
never share a half-initialised model. The language is the request's `language`, else what
Whisper detects; when its detection is unsure (below LANGUAGE_SURE), the caller's hint (the
chat page sends its own language) decides.
"""

from __future__ import annotations

import itertools
import threading
from pathlib import Path
from typing import Any, BinaryIO

import av
from django.conf import settings

from .base import Progress, ToolError, register

_model_lock = threading.Lock()
_model: Any = None


LANGUAGE_SURE = 0.5


def whisper_model_path() -> str:
    configured = settings.TOOLS["WHISPER_MODEL_PATH"]
    if configured:
        return str(configured)
    from .whisper_models import install_dir, model_path

    return str(model_path(settings.TOOLS["WHISPER_MODEL"], [install_dir(), settings.DATA_DIR / "models"]))


def pick_language(model: Any, audio: Any, asked: str | None, hint: str | None) -> str | None:
    """The language to transcribe in: the one asked for, else the detected one, else — when
    the detection is unsure — the hint (None: let Whisper decide as it goes)."""
    if asked:
        return asked
    if not model.model.is_multilingual:
        return "en"
    detected, probability, _ = model.detect_language(audio)
    if probability < LANGUAGE_SURE and hint:
        return hint
    return str(detected)


def whisper_model() -> Any:
    global _model
    with _model_lock:
        if _model is None:
            from faster_whisper import WhisperModel

            config = settings.TOOLS
            _model = WhisperModel(
                whisper_model_path(),
                device="cpu",
                compute_type=config["WHISPER_COMPUTE_TYPE"],
                cpu_threads=config["WHISPER_THREADS"],
            )
        return _model


def probe_duration(path: Path) -> float:
    """Seconds of audio, or ToolError(415/413/422) for what cannot or must not be transcribed."""
    try:
        with av.open(str(path)) as container:
            streams = container.streams.audio
            if not streams:
                raise ToolError("The file has no audio track.", status=415, code="no_audio")
            stream = streams[0]
            if stream.duration is not None and stream.time_base is not None:
                duration = float(stream.duration * stream.time_base)
            elif container.duration is not None:
                duration = container.duration / av.time_base
            else:
                duration = sum(frame.samples / frame.sample_rate for frame in container.decode(stream))
    except ToolError:
        raise
    except (av.FFmpegError, ValueError, OSError, IndexError):
        raise ToolError(
            "That is not an audio file GhostGPT can decode (webm/opus, ogg, mp4/m4a, mp3, wav).",
            status=415,
            code="unsupported_audio",
        ) from None
    limit = settings.TOOLS["TRANSCRIBE_MAX_SECONDS"]
    if duration > limit:
        raise ToolError(
            f"The audio is {duration:.0f}s long; at most {limit}s are transcribed.", status=413, code="audio_too_long"
        )
    return duration


WHISPER_RATE = 16000  # what faster-whisper takes: mono float32 samples at 16 kHz


def decode_limited(source: BinaryIO, max_seconds: float) -> Any:
    """The audio as whisper's input, decoded frame by frame and counted as it goes: past
    `max_seconds` of real samples it stops with 413, whatever the container's header
    claimed (a 25 MB Opus or an MP4 with a forged duration can hold hours)."""
    import numpy as np

    limit = int(max_seconds * WHISPER_RATE)
    resampler = av.AudioResampler(format="s16", layout="mono", rate=WHISPER_RATE)
    chunks, count = [], 0
    try:
        with av.open(source, mode="r") as container:
            frames = container.decode(container.streams.audio[0])
            for frame in itertools.chain(frames, [None]):  # None flushes the resampler
                for resampled in resampler.resample(frame):
                    samples = resampled.to_ndarray().reshape(-1)
                    count += samples.size
                    if count > limit:
                        raise ToolError(
                            f"The audio is longer than {max_seconds:g}s (counted while decoding; its header "
                            "said less); at most that much is transcribed.",
                            status=413,
                            code="audio_too_long",
                        )
                    chunks.append(samples)
    except (av.FFmpegError, ValueError, OSError, IndexError):
        raise ToolError("The audio could not be decoded.", status=422, code="audio_unreadable") from None
    audio = np.concatenate(chunks) if chunks else np.zeros(0, dtype=np.int16)
    return audio.astype(np.float32) / 32768.0


class TranscribeTool:
    name = "transcribe"

    def validate(self, params: dict[str, Any]) -> dict[str, Any]:
        for name in ("language", "language_hint"):
            language = params.get(name)
            if language is not None and (not isinstance(language, str) or not 2 <= len(language) <= 3):
                raise ToolError(f"'{name}' must be an ISO-639-1 code such as 'en'.", code="invalid_language")
        temperature = params.get("temperature", 0.0)
        if not isinstance(temperature, int | float) or not 0 <= temperature <= 1:
            raise ToolError("'temperature' must be between 0 and 1.", code="invalid_temperature")
        return {**params, "duration": probe_duration(Path(params["path"]))}

    def run(self, params: dict[str, Any], progress: Progress) -> dict[str, Any]:
        try:
            options: dict[str, Any] = {}
            if params.get("temperature"):  # 0 (the default) keeps whisper's fallback to higher temperatures, as OpenAI
                options["temperature"] = params["temperature"]
            audio = decode_limited(params["file"], settings.TOOLS["TRANSCRIBE_MAX_SECONDS"])
            model = whisper_model()
            language = pick_language(model, audio, params.get("language"), params.get("language_hint"))
            segments, info = model.transcribe(
                audio,
                language=language,
                initial_prompt=params.get("prompt") or None,
                word_timestamps=bool(params.get("words")),
                beam_size=settings.TOOLS["WHISPER_BEAM_SIZE"],
                **options,
            )
            total = max(info.duration, 0.001)
            rows = []
            for number, segment in enumerate(segments):
                rows.append(_segment(number, segment))
                progress(int(min(segment.end / total, 1.0) * 100))
        except (av.FFmpegError, RuntimeError, ValueError):
            raise ToolError("The audio could not be decoded.", status=422, code="audio_unreadable") from None
        return {
            "text": " ".join(row["text"] for row in rows).strip(),
            "language": info.language,
            "duration": round(info.duration, 3),
            "segments": rows,
        }


def _segment(number: int, segment: Any) -> dict[str, Any]:
    row = {
        "id": number,
        "start": round(segment.start, 3),
        "end": round(segment.end, 3),
        "text": segment.text.strip(),
        "avg_logprob": segment.avg_logprob,
        "no_speech_prob": segment.no_speech_prob,
        "compression_ratio": segment.compression_ratio,
        "tokens": list(segment.tokens),
        "temperature": segment.temperature,
        "seek": segment.seek,
    }
    if segment.words:
        row["words"] = [
            {"word": w.word.strip(), "start": round(w.start, 3), "end": round(w.end, 3)} for w in segment.words
        ]
    return row


register(TranscribeTool())
