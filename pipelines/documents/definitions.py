"""Document imports: resumes and job descriptions (PDF, posting URLs), skills extraction per document."""

import dagster as dg

from pipelines.documents.assets import document_import_job, document_skills, document_skills_job
from pipelines.documents.sensors import document_sensors

defs = dg.Definitions(
    assets=[document_skills],
    jobs=[document_import_job, document_skills_job],
    sensors=document_sensors,
)
