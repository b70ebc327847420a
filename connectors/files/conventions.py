"""What the store's SQL and the file writers agree on, without Arrow (a run that writes no file never loads it)."""

# a record's tags as the store hands them over (kind "tags"): one text, joined by the unit separator;
# CSV and Excel show them joined by TAGS_SEPARATOR, Parquet as a list
TAGS_DELIMITER = "\x1f"
TAGS_SEPARATOR = ", "
# rows of one Excel sheet, header included
EXCEL_MAX_ROWS = 1_048_576
