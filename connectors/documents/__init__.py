"""Documents: PDF text (pypdfium2, OCR through Tesseract for scans), job posting pages, parsing of
resumes and job descriptions, and skills matching. No Dagster, no database."""
