"""POST /v1/audio/transcriptions: OpenAI's multipart contract over the transcribe tool."""

from __future__ import annotations

from typing import Any

from django.http import HttpResponse
from rest_framework import serializers
from rest_framework.request import Request
from rest_framework.response import Response

from chat.accounts.drf import ApiKeyAuthentication, HasApiKey
from chat.api.errors import ApiError

from .views import TranscribeApi

FORMATS = ["json", "text", "srt", "vtt", "verbose_json"]
LANGUAGE_NAMES = {
    "en": "english",
    "ru": "russian",
    "de": "german",
    "fr": "french",
    "es": "spanish",
    "it": "italian",
    "pt": "portuguese",
    "nl": "dutch",
    "uk": "ukrainian",
    "pl": "polish",
    "tr": "turkish",
    "zh": "chinese",
    "ja": "japanese",
    "ko": "korean",
    "ar": "arabic",
}


def _clock(seconds: float, separator: str) -> str:
    millis = round(seconds * 1000)
    hours, millis = divmod(millis, 3_600_000)
    minutes, millis = divmod(millis, 60_000)
    secs, millis = divmod(millis, 1000)
    return f"{hours:02d}:{minutes:02d}:{secs:02d}{separator}{millis:03d}"


def subtitles(segments: list[dict[str, Any]], kind: str) -> str:
    if kind == "srt":
        return "".join(
            f"{n}\n{_clock(s['start'], ',')} --> {_clock(s['end'], ',')}\n{s['text']}\n\n"
            for n, s in enumerate(segments, start=1)
        )
    return "WEBVTT\n\n" + "".join(
        f"{_clock(s['start'], '.')} --> {_clock(s['end'], '.')}\n{s['text']}\n\n" for s in segments
    )


class AudioTranscriptionsApi(TranscribeApi):
    """Any `model` value is accepted and served by the configured faster-whisper model."""

    authentication_classes = [ApiKeyAuthentication]
    permission_classes = [HasApiKey]

    class InputSerializer(serializers.Serializer):
        model = serializers.CharField(max_length=200)
        language = serializers.CharField(max_length=3, required=False)
        prompt = serializers.CharField(max_length=2000, required=False, allow_blank=True)
        temperature = serializers.FloatField(min_value=0, max_value=1, required=False)
        response_format = serializers.ChoiceField(choices=FORMATS, default="json")

    def options_from(self, request: Request) -> dict[str, Any]:
        data = self.InputSerializer(data=request.data)
        data.is_valid(raise_exception=True)
        granularities = request.data.getlist("timestamp_granularities[]") or request.data.getlist(
            "timestamp_granularities"
        )
        if set(granularities) - {"word", "segment"}:
            raise ApiError(
                400, "timestamp_granularities[] may hold 'word' and 'segment'.", param="timestamp_granularities"
            )
        self.response_format = data.validated_data["response_format"]
        self.granularities = set(granularities) or {"segment"}
        options = {k: v for k, v in data.validated_data.items() if k in ("language", "prompt", "temperature")}
        return {**options, "words": "word" in self.granularities}

    def post(self, request: Request) -> Response | HttpResponse:
        response = self.start_upload(request)
        if response.status_code != 200:
            return response
        result = response.data
        if self.response_format == "json":
            return Response({"text": result["text"]})
        if self.response_format in ("text", "srt", "vtt"):
            body = (
                result["text"]
                if self.response_format == "text"
                else subtitles(result["segments"], self.response_format)
            )
            content_type = "text/vtt" if self.response_format == "vtt" else "text/plain"
            return HttpResponse(body, content_type=f"{content_type}; charset=utf-8")
        verbose: dict[str, Any] = {
            "task": "transcribe",
            "language": LANGUAGE_NAMES.get(result["language"], result["language"]),
            "duration": result["duration"],
            "text": result["text"],
        }
        if "segment" in self.granularities:
            verbose["segments"] = [{k: v for k, v in s.items() if k != "words"} for s in result["segments"]]
        if "word" in self.granularities:
            verbose["words"] = [w for s in result["segments"] for w in s.get("words", [])]
        return Response(verbose)
