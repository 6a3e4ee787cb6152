"""The wording of the web survey's interface: buttons, messages, page titles.

The suite ships English and Urdu. An instrument adds or overrides any string
for any of its languages under ``interface:`` (key -> language -> text)::

    interface:
      title: {en: Neighbourhood survey, so: Sahanka xaafadda}
      next:  {so: Xiga}
      back:  {so: Dib u noqo}

``interface_text`` looks a string up in the instrument first, then in the
shipped wording, then falls back to English. ``untranslated_interface`` lists,
per declared language, the keys that would fall back to English, which
``resilience instrument validate`` reports so that a Somali survey never shows
English buttons.
"""

from __future__ import annotations

import string

__all__ = ["UI", "INTERFACE_KEYS", "LANGUAGE_NAMES", "RTL", "interface_text", "untranslated_interface",
           "placeholders"]

# endonyms for the language switcher; the code itself for others
LANGUAGE_NAMES = {"en": "English", "ur": "اردو", "fr": "Français", "cy": "Cymraeg", "pl": "Polski",
                  "ar": "العربية", "bn": "বাংলা", "pa": "ਪੰਜਾਬੀ", "so": "Soomaali", "gu": "ગુજરાતી",
                  "tr": "Türkçe", "es": "Español", "de": "Deutsch"}
RTL = {"ur", "ar", "fa", "he", "ps", "sd", "ug", "yi"}

UI: dict[str, dict[str, str]] = {
    "en": {
        "next": "Next", "back": "Back", "save": "Save and continue later", "submit": "Submit my answers",
        "progress": "Page {n} of {total}", "required": "Please answer this question.",
        "invalid": "This answer is not one of the choices.", "number": "Please enter a number.",
        "range": "Please enter a number from {min} to {max}.", "whole": "Please enter a whole number.",
        "date": "Please enter a date as YYYY-MM-DD.", "toolong": "Please shorten this answer.",
        "errors": "Some answers need your attention.", "saved": "Your answers are saved.",
        "resume": "To continue later, open this link (keep it private: it opens your answers):",
        "review_title": "Ready to submit", "review_body": "You answered {n} questions. "
        "You can go back to change an answer, or submit now.",
        "review_body_one": "You answered 1 question. You can go back to change an answer, or submit now.",
        "done_title": "Thank you", "done_body": "Your answers have been received.",
        "code": "Your reference code (quote it to withdraw your answers):",
        "language": "Language", "optional": "(optional)", "missing": "Other answers",
        "declined": "You chose not to take part. Thank you for your time.",
        "consent_title": "About this survey", "skip": "Skip to the questions",
        "resume_once": "The link works once: when you come back, press “Save and continue later” again for a new one.",
        "forbidden_title": "Not allowed", "expired": "The form has expired or did not come from this survey. "
        "Please reload the page.", "need_token": "This survey needs the personal link you were sent.",
        "token_used": "This personal link has already been used to submit answers.",
        "busy_title": "Too many requests", "busy": "Please wait a moment and try again.",
        "notfound_title": "Not found", "notfound": "There is no such page.",
        "continue_title": "Welcome back", "continue": "Continue my survey",
        "link_title": "Link not found", "link": "This resume link is not valid or has already been used. "
        "Please check that it was copied whole.",
        "unavailable_title": "Survey unavailable", "unavailable": "The survey cannot store answers at the "
        "moment, so nothing from this page was saved. Please try again later.",
        "error_title": "Something went wrong", "error": "The server could not complete this request. "
        "Please try again later.",
        "badform": "The form could not be read. Please reload the page and try again.",
        "withdraw_title": "Withdraw my answers", "withdraw_body": "Enter the reference code you were "
        "shown at the end of the survey. Your answers will be deleted; only a note that answers were "
        "withdrawn is kept.", "withdraw_code": "Reference code", "withdraw_button": "Withdraw my answers",
        "withdrawn_title": "Answers withdrawn", "withdrawn": "Your answers have been deleted. Thank you.",
        "withdraw_unknown": "No answers with this reference code were found. Please check the code.",
        "withdraw_link": "Withdraw my answers",
    },
    "ur": {
        "next": "اگلا", "back": "پیچھے", "save": "محفوظ کریں اور بعد میں جاری رکھیں", "submit": "میرے جوابات جمع کرائیں",
        "progress": "صفحہ {n} از {total}", "required": "براہ کرم اس سوال کا جواب دیں۔",
        "errors": "کچھ جوابات پر توجہ درکار ہے۔", "saved": "آپ کے جوابات محفوظ ہو گئے ہیں۔",
        "resume": "بعد میں جاری رکھنے کے لیے یہ لنک کھولیں (اسے نجی رکھیں):",
        "review_title": "جمع کرانے کے لیے تیار", "done_title": "شکریہ",
        "done_body": "آپ کے جوابات موصول ہو گئے ہیں۔", "language": "زبان", "optional": "(اختیاری)",
        "invalid": "یہ جواب دیے گئے انتخابات میں سے نہیں ہے۔", "number": "براہ کرم ایک عدد درج کریں۔",
        "range": "براہ کرم {min} سے {max} تک کوئی عدد درج کریں۔", "whole": "براہ کرم پورا عدد درج کریں۔",
        "date": "براہ کرم تاریخ YYYY-MM-DD کی شکل میں درج کریں۔", "toolong": "براہ کرم یہ جواب مختصر کریں۔",
        "review_body": "آپ نے {n} سوالات کے جواب دیے۔ آپ کوئی جواب بدلنے کے لیے پیچھے جا سکتے ہیں، یا ابھی جمع کرا سکتے ہیں۔",
        "review_body_one": "آپ نے 1 سوال کا جواب دیا۔ آپ کوئی جواب بدلنے کے لیے پیچھے جا سکتے ہیں، یا ابھی جمع کرا سکتے ہیں۔",
        "code": "آپ کا حوالہ کوڈ (اپنے جوابات واپس لینے کے لیے یہ کوڈ بتائیں):",
        "missing": "دیگر جوابات", "declined": "آپ نے حصہ نہ لینے کا انتخاب کیا۔ آپ کے وقت کا شکریہ۔",
        "consent_title": "اس سروے کے بارے میں", "skip": "سوالات پر جائیں",
        "resume_once": "یہ لنک ایک بار کام کرتا ہے: واپس آنے پر نیا لنک لینے کے لیے دوبارہ «محفوظ کریں اور بعد میں جاری رکھیں» دبائیں۔",
        "forbidden_title": "اجازت نہیں", "expired": "فارم کی مدت ختم ہو گئی ہے۔ براہ کرم صفحہ دوبارہ لوڈ کریں۔",
        "need_token": "اس سروے کے لیے وہ ذاتی لنک درکار ہے جو آپ کو بھیجا گیا تھا۔",
        "token_used": "یہ ذاتی لنک پہلے ہی جوابات جمع کرانے کے لیے استعمال ہو چکا ہے۔",
        "busy_title": "بہت زیادہ درخواستیں", "busy": "براہ کرم تھوڑی دیر انتظار کریں اور دوبارہ کوشش کریں۔",
        "notfound_title": "نہیں ملا", "notfound": "ایسا کوئی صفحہ نہیں ہے۔",
        "continue_title": "خوش آمدید", "continue": "اپنا سروے جاری رکھیں",
        "link_title": "لنک نہیں ملا", "link": "یہ لنک درست نہیں ہے یا پہلے استعمال ہو چکا ہے۔ براہ کرم دیکھیں کہ پورا لنک کاپی ہوا ہے۔",
        "unavailable_title": "سروے دستیاب نہیں", "unavailable": "سروے اس وقت جوابات محفوظ نہیں کر سکتا، "
        "اس لیے اس صفحے کا کوئی جواب محفوظ نہیں ہوا۔ براہ کرم بعد میں دوبارہ کوشش کریں۔",
        "error_title": "کچھ غلط ہو گیا", "error": "سرور یہ درخواست مکمل نہیں کر سکا۔ براہ کرم بعد میں دوبارہ کوشش کریں۔",
        "badform": "فارم پڑھا نہیں جا سکا۔ براہ کرم صفحہ دوبارہ لوڈ کر کے پھر کوشش کریں۔",
        "withdraw_title": "اپنے جوابات واپس لیں", "withdraw_body": "سروے کے آخر میں دکھایا گیا حوالہ کوڈ درج کریں۔ "
        "آپ کے جوابات حذف کر دیے جائیں گے؛ صرف یہ نوٹ رکھا جائے گا کہ جوابات واپس لیے گئے۔",
        "withdraw_code": "حوالہ کوڈ", "withdraw_button": "میرے جوابات واپس لیں",
        "withdrawn_title": "جوابات واپس لے لیے گئے", "withdrawn": "آپ کے جوابات حذف کر دیے گئے ہیں۔ شکریہ۔",
        "withdraw_unknown": "اس حوالہ کوڈ کے ساتھ کوئی جوابات نہیں ملے۔ براہ کرم کوڈ دیکھ لیں۔",
        "withdraw_link": "اپنے جوابات واپس لیں",
    },
}

# every string of the interface, plus the survey title (default: the instrument's title)
INTERFACE_KEYS: tuple[str, ...] = ("title", *UI["en"])


def placeholders(text: str) -> set[str] | None:
    """The ``{name}`` fields a wording fills in (a translation must keep the same ones);
    None when the text is not a valid format string (a stray ``{`` or ``}``)."""
    try:
        return {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError:
        return None


def interface_text(instrument, lang: str, key: str, **fields) -> str:
    """``key`` in ``lang``: the instrument's own wording, else the shipped one, else English."""
    own = (getattr(instrument, "interface", None) or {}).get(key) or {}
    if key == "title":
        text = own.get(lang) or own.get(instrument.default_language) or instrument.title
    else:
        text = own.get(lang) or UI.get(lang, {}).get(key) or UI["en"][key]
    return text.format(**fields) if fields else text


def untranslated_interface(instrument) -> dict[str, list[str]]:
    """Per declared language, the interface keys that would be shown in English."""
    own = getattr(instrument, "interface", None) or {}
    out: dict[str, list[str]] = {}
    for lang in instrument.languages:
        if lang == "en":
            continue
        gaps = [k for k in INTERFACE_KEYS
                if not (own.get(k) or {}).get(lang)
                and (k == "title" or not UI.get(lang, {}).get(k))]
        if "title" in gaps and lang == instrument.default_language:
            gaps.remove("title")  # the instrument's own title is written in its default language
        if gaps:
            out[lang] = gaps
    return out
