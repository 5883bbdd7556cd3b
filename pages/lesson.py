"""Guided lesson: the paper's story in steps, each a named preset of a page of the app."""

import streamlit as st

import shell
from sinkd.lab import lesson

shell.page("lesson")
st.title("Guided lesson")
st.markdown(
    f"""
The story of SinKD in {len(lesson.STEPS)} steps, from what knowledge distillation matches to a
real distillation. Each step opens a page of the app with one of its presets. **Predict first:**
the sidebar asks a question; answer it, then reveal what to notice, computed by the page. Move
on with *Next* in the sidebar. The step's number is in the page's URL (`?lesson=5`): share it to
open that step.
"""
)
if st.button("Start the lesson at step 1", type="primary", key="lesson_start"):
    shell.go_to_step(1)
for number, step in enumerate(lesson.STEPS, 1):
    where = shell.PAGES[step.page]
    preset = f", preset *{step.preset}*" if step.preset else ""
    text, button = st.columns([5, 1], vertical_alignment="center")
    text.markdown(f"**{number}. {step.title}**: {where.icon} {where.title}{preset}")
    if button.button(f"Open step {number}", key=f"lesson_open_{number}", width="stretch"):
        shell.go_to_step(number)
