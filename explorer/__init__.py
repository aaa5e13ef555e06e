"""The Streamlit glue of DeepRC Explorer, one concern per module.

``deeprc_core`` does the science and never imports streamlit; the pages under ``app_pages/`` compose it; this
package holds what sits between them. Modules without widgets import no streamlit and are tested on their own:

- :mod:`explorer.settings` (no streamlit): where the data lives, what the app accepts, torch's thread count.
- :mod:`explorer.archive` (no streamlit): uploaded datasets written to disk, zips checked and extracted safely,
  a folder zipped for download.
- :mod:`explorer.training_job` (no streamlit): a training run in a background thread.
- :mod:`explorer.training_form` (no streamlit): the Train page's settings, defaults read from the configs.
- :mod:`explorer.state`: the error guard and the session's private folder.
- :mod:`explorer.models`: the model picker, the loaded model and its card.
- :mod:`explorer.sources`: the repertoires a session can pick (samples and uploads), sample labels and truth.
- :mod:`explorer.cache`: cached results (scores, attention, attributions, kernel motifs, recovery).
- :mod:`explorer.figures`: figures as cached images, tables, downloads.
- :mod:`explorer.uploads`: training datasets from the sample data or from uploads.
"""
