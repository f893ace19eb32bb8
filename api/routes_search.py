"""/v1/search and /v1/videos/{id}/ask."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query
from fastapi.concurrency import run_in_threadpool
from pydantic import BaseModel, Field

from api.problems import problem_responses
from api.routes_videos import VideoId
from api.schemas import server_vlm
from api.state import AppState, state_of, tenant_of

router = APIRouter(tags=["search"])

Tenant = Annotated[str, Depends(tenant_of)]
State = Annotated[AppState, Depends(state_of)]


class Ranks(BaseModel):
    vector: int | None
    lexical: int | None


class Hit(BaseModel):
    moment_id: int
    video_id: str
    filename: str
    start_s: float
    end_s: float
    start: str
    end: str
    score: float = Field(
        description="Absolute relevance in [0, 1], comparable across queries (not relative to the best hit): the "
        "embedding similarity, calibrated, combined with the share of the query's words the moment contains; "
        "0.5 and up is what `ask` answers from (search.ask_min_score)"
    )
    text: str = Field(description="The matching text: speech, on-screen text or caption")
    matched_in: str
    keyframe_url: str | None
    link: str = Field(description="The video's media with a #t= fragment at the moment's start")
    ranks: Ranks


class SearchResults(BaseModel):
    query: str
    items: list[Hit]


class AskRequest(BaseModel):
    question: str = Field(min_length=1, max_length=1000)
    vlm: str | None = Field(None, pattern="^(auto|none|transformers|openai)$")


class Citation(BaseModel):
    start_s: float
    end_s: float
    start: str
    end: str
    text: str


class Answer(BaseModel):
    video_id: str
    question: str
    answer: str
    citations: list[Citation]
    mode: str = Field(description="whole-video, retrieved-moments (Qwen3-VL), extractive (no model), or no-match "
                      "(no moment scores `search.ask_min_score`: nothing in the video answers the question)")
    model: str | None
    confidence: float | None
    note: str | None


def searcher(state: AppState) -> Any:
    return state.services.searcher


@router.get("/v1/search", response_model=SearchResults, summary="Find moments in your videos",
            responses=problem_responses(400, 401, 404, 422))  # fmt: skip
def search(
    tenant: Tenant,
    state: State,
    q: Annotated[str, Query(min_length=1, max_length=500, description="What to look for")],
    video_id: Annotated[str | None, Query(max_length=64, pattern=r"^[0-9a-zA-Z_-]+$")] = None,
    start_s: Annotated[float | None, Query(ge=0, le=1e7)] = None,
    end_s: Annotated[float | None, Query(ge=0, le=1e7)] = None,
    limit: Annotated[int, Query(ge=1, le=100)] = 10,
) -> Any:
    # Another tenant's video_id is not found, as a missing one: the searcher's own gate says so.
    hits = searcher(state).search(q, tenant, video_id=video_id, start_s=start_s, end_s=end_s, limit=limit)
    items = []
    for h in hits:  # plain dicts: the response model validates them once
        kf = h["keyframe_index"]
        items.append({**h, "keyframe_url": f"/v1/videos/{h['video_id']}/keyframes/{kf}.jpg" if kf is not None else None,
                      "link": f"/v1/videos/{h['video_id']}/media#t={h['start_s']:.3f}"})  # fmt: skip
    return {"query": q, "items": items}


@router.post("/v1/videos/{video_id}/ask", response_model=Answer, summary="Ask a question about a video",
             responses=problem_responses(400, 401, 404, 422, 502, 503))  # fmt: skip
async def ask(video_id: VideoId, body: AskRequest, tenant: Tenant, state: State) -> Any:
    # No check of the video here: `Asker.ask` reads it through the tenant gate (another tenant's is not found).
    vlm = server_vlm(state.settings, body.vlm)
    return await run_in_threadpool(state.services.asker.ask, tenant, video_id, body.question, vlm)
