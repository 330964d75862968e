-- Grades are kept in millionths of a point (they were kept in thousandths): every
-- stored grade and every daily tally gains three digits. Jobs queued before this name
-- the grade in thousandths and are read as such.
UPDATE grade_records SET units = units * 1000;
UPDATE task_grades SET units = units * 1000;
UPDATE grade_days_course SET grade_sum = grade_sum * 1000;
UPDATE grade_days_student SET grade_sum = grade_sum * 1000;
UPDATE grade_days_course_student SET grade_sum = grade_sum * 1000;
UPDATE task_days_course SET grade_sum = grade_sum * 1000;
UPDATE task_days_course_student SET grade_sum = grade_sum * 1000;
