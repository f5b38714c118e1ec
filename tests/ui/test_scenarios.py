"""The browser UI through ``parley serve`` (real models): the scenario picker and a handoff.

The page picks the customer-service desk, connects over WebRTC (the default) and types a
billing question: the greeter's ``transfer_to_billing`` runs on the server (the call's
sideband), and the page, which reads the call's ``parley.*`` events from the server, shows
the new agent in the chip and a breadcrumb in the transcript and the events panel.
"""

from __future__ import annotations

import pytest

from tests.support.serve import Serve
from tests.ui.conftest import OpenPage

pytestmark = [pytest.mark.models, pytest.mark.browser]


async def test_scenario_picker_and_handoff_breadcrumb(serve: Serve, open_page: OpenPage) -> None:
    page = await open_page(serve.http)
    options = await page.js("[...document.querySelectorAll('#scenario-select option')].map(o => o.value)")
    assert {"none", "assistant", "customer_service", "chat_supervisor"} <= set(options)
    await page.page.select_option("#scenario-select", "customer_service")
    assert (await page.page.inner_text("#agent-chip")).startswith("Front desk")
    await page.connect()
    assert await page.page.is_disabled("#scenario-select")  # a session keeps its scenario
    first = await page.wait_event("parley.agent", within=15)
    assert first["agent"] == "greeter"
    await page.send_text("I want to talk to billing about my invoice.")
    handoff = await page.wait_event("parley.handoff", within=90)
    assert (handoff["from_agent"], handoff["to_agent"]) == ("greeter", "billing")
    crumb = page.page.locator("#transcript .divider", has_text="Handed off to Billing")
    await crumb.wait_for(timeout=10000)
    await page.until(
        "() => document.querySelector('#agent-chip').innerText.startsWith('Billing')", what="the chip"
    )
    # The billing agent answers in the same conversation.
    await page.until(
        """() => parley.events.records.some(r => r.type === 'response.done'
             && r.event.response.output.some(o => o.type === 'message'))""",
        within=90,
        what="billing's answer",
    )
    # The events panel lists the handoff with the standard events around it.
    assert await page.page.locator("#panel-events", has_text="greeter → billing").count()
