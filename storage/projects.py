"""Crowdfunding projects as Lifeline knows them: organizer, totals, recent donations."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import asyncpg

from services.clock import iso
from storage.db import Queryable

__all__ = ["ProjectRepository"]

RECENT = 10


def _like(text: str) -> str:
    """``text`` matched literally inside ILIKE's pattern."""
    return text.replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")


def _donation(row: asyncpg.Record) -> dict[str, Any]:
    return {
        "amount_minor": row["amount_minor"],
        "donor_display": row["donor_display"],
        "message": row["message"],
        "at": iso(row["at"]),
    }


class ProjectRepository:
    def __init__(self, pool: asyncpg.Pool) -> None:
        self._pool = pool

    @staticmethod
    async def upsert(
        conn: Queryable,
        project_id: str,
        *,
        organizer_id: str | None,
        title: str | None,
        goal_minor: int | None = None,
    ) -> None:
        await conn.execute(
            """INSERT INTO projects (id, organizer_id, title, goal_minor)
               VALUES ($1, $2::uuid, $3, $4)
               ON CONFLICT (id) DO UPDATE
                  SET organizer_id = COALESCE(EXCLUDED.organizer_id, projects.organizer_id),
                      title = COALESCE(EXCLUDED.title, projects.title),
                      goal_minor = COALESCE(EXCLUDED.goal_minor, projects.goal_minor),
                      updated_at = now()""",
            project_id,
            organizer_id,
            title,
            goal_minor,
        )

    async def listing(self, *, query: str | None, limit: int) -> list[dict[str, Any]]:
        """Projects with their totals, the most recently active first; ``query`` finds
        titles (and ids) containing it, case-insensitively."""
        rows = await self._pool.fetch(
            """SELECT id, title, currency, total_minor, donors_count, goal_minor, updated_at
                 FROM projects
                WHERE $1::text IS NULL
                   OR title ILIKE '%' || $1 || '%' OR id ILIKE '%' || $1 || '%'
                ORDER BY updated_at DESC, id
                LIMIT $2""",
            _like(query) if query else None,
            limit,
        )
        return [
            {
                "project_id": r["id"],
                "title": r["title"],
                "currency": r["currency"],
                "total_minor": r["total_minor"],
                "donors_count": r["donors_count"],
                "goal_minor": r["goal_minor"],
                "updated_at": iso(r["updated_at"]),
            }
            for r in rows
        ]

    async def series(self, project_id: str, *, now: float, days: int) -> dict[str, Any]:
        """Donations per hour over the last 48 hours and per day for ``days`` before,
        every bucket present (zero when nothing came), oldest first, in one round trip."""
        rows = await self._pool.fetch(
            """WITH edge AS (SELECT date_trunc('hour', $2::timestamptz) - interval '47 hours'
                                    AS hourly_from),
               buckets AS (
                 SELECT 'hour' AS unit, b AS start, b + interval '1 hour' AS stop
                   FROM edge, generate_series(edge.hourly_from, $2::timestamptz,
                                              interval '1 hour') AS b
                 UNION ALL
                 SELECT 'day', b, LEAST(b + interval '1 day', edge.hourly_from)
                   FROM edge, generate_series(
                          date_trunc('day', edge.hourly_from) - make_interval(days => $3),
                          edge.hourly_from - interval '1 microsecond',
                          interval '1 day') AS b)
               SELECT k.unit, k.start, COALESCE(SUM(d.amount_minor), 0)::bigint AS amount_minor,
                      COUNT(d.event_id) AS donations
                 FROM buckets k
                 LEFT JOIN donations d
                   ON d.project_id = $1 AND d.at >= k.start AND d.at < k.stop
                GROUP BY k.unit, k.start
                ORDER BY k.start""",
            project_id,
            datetime.fromtimestamp(now, UTC),
            days,
        )
        out: dict[str, list[dict[str, Any]]] = {"hourly": [], "daily": []}
        for r in rows:
            out["hourly" if r["unit"] == "hour" else "daily"].append(
                {
                    "at": iso(r["start"]),
                    "amount_minor": r["amount_minor"],
                    "donations": r["donations"],
                }
            )
        return out

    @staticmethod
    async def add_donation(
        conn: Queryable,
        *,
        event_id: str,
        project_id: str,
        amount_minor: int,
        currency: str,
        donor_id: str | None,
        donor_display: str,
        message: str | None,
        at: float,
    ) -> dict[str, Any] | None:
        """Add a donation to its project's totals, all in SQL under the project's row lock.

        Returns the project's new totals and organizer, or None if the currency
        differs from the project's.
        """
        await conn.execute(
            "INSERT INTO projects (id, currency) VALUES ($1, $2) ON CONFLICT DO NOTHING",
            project_id,
            currency,
        )
        project = await conn.fetchrow(
            "SELECT currency, organizer_id::text AS organizer_id FROM projects"
            " WHERE id = $1 FOR UPDATE",
            project_id,
        )
        assert project is not None
        if project["currency"] is not None and project["currency"] != currency:
            return None
        new_donor = donor_id is None or not await conn.fetchval(
            "SELECT EXISTS (SELECT 1 FROM donations WHERE project_id = $1 AND donor_id = $2)",
            project_id,
            donor_id,
        )
        await conn.execute(
            """INSERT INTO donations (event_id, project_id, amount_minor, currency, donor_id,
                                      donor_display, message, at)
               VALUES ($1, $2, $3, $4, $5, $6, $7, $8)""",
            event_id,
            project_id,
            amount_minor,
            currency,
            donor_id,
            donor_display,
            message,
            datetime.fromtimestamp(at, UTC),
        )
        row = await conn.fetchrow(
            """UPDATE projects SET total_minor = total_minor + $2,
                      donors_count = donors_count + $3, currency = $4, updated_at = now()
                WHERE id = $1
            RETURNING total_minor, donors_count, currency, organizer_id::text AS organizer_id""",
            project_id,
            amount_minor,
            1 if new_donor else 0,
            currency,
        )
        assert row is not None
        return dict(row)

    async def ticker(self, project_id: str) -> dict[str, Any]:
        """The totals and the last donations, in one round trip (viewers reconnect in herds)."""
        rows = await self._pool.fetch(
            """SELECT p.total_minor, p.donors_count, p.currency, p.title, p.goal_minor,
                      d.amount_minor, d.donor_display, d.message, d.at
                 FROM (SELECT 1) one
                 LEFT JOIN projects p ON p.id = $1
                 LEFT JOIN LATERAL (SELECT amount_minor, donor_display, message, at
                                      FROM donations WHERE project_id = $1
                                     ORDER BY at DESC, event_id LIMIT $2) d ON true""",
            project_id,
            RECENT,
        )
        first = rows[0]
        return {
            "project_id": project_id,
            "title": first["title"],
            "goal_minor": first["goal_minor"],
            "total_minor": first["total_minor"] or 0,
            "currency": first["currency"],
            "donors_count": first["donors_count"] or 0,
            "recent": [_donation(r) for r in rows if r["at"] is not None],
        }
