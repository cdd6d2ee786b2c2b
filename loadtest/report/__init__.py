"""Figures to reports: statistics (:mod:`.stats`), shared helpers and the
end-to-end report (:mod:`.common`), the bench and hot-path reports
(:mod:`.bench`, :mod:`.hotpath`) and their plots (``*_plots``)."""
