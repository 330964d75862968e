-- Course grades and task grades are kept apart, as the original service kept them:
-- the daily tallies in grade_days_* now hold course grades only, and task_days_* hold
-- the current task grades (a replaced task grade moves its tally). Both are rebuilt from
-- the stored grades, so existing data keeps every grade it had.
CREATE TABLE task_days_course (
    course_id     TEXT   NOT NULL,
    day           BIGINT NOT NULL, -- Unix day number (UTC)
    grade_sum     BIGINT NOT NULL,
    grade_count   BIGINT NOT NULL,
    on_time_count BIGINT NOT NULL,
    PRIMARY KEY (course_id, day)
);
CREATE TABLE task_days_course_student (
    course_id     TEXT   NOT NULL,
    student_id    TEXT   NOT NULL,
    day           BIGINT NOT NULL,
    grade_sum     BIGINT NOT NULL,
    grade_count   BIGINT NOT NULL,
    on_time_count BIGINT NOT NULL,
    PRIMARY KEY (course_id, student_id, day)
);

DELETE FROM grade_days_course;
DELETE FROM grade_days_student;
DELETE FROM grade_days_course_student;
ALTER TABLE grade_days_course DROP COLUMN task_count;
ALTER TABLE grade_days_student DROP COLUMN task_count;
ALTER TABLE grade_days_course_student DROP COLUMN task_count;

-- The day of an instant in µs, rounded down (also before 1970).
INSERT INTO grade_days_course (course_id, day, grade_sum, grade_count, on_time_count)
SELECT course_id,
       (created_at - ((created_at % 86400000000) + 86400000000) % 86400000000) / 86400000000,
       SUM(units), COUNT(*), SUM(CASE WHEN on_time THEN 1 ELSE 0 END)
FROM grade_records GROUP BY 1, 2;
INSERT INTO grade_days_student (student_id, day, grade_sum, grade_count, on_time_count)
SELECT student_id,
       (created_at - ((created_at % 86400000000) + 86400000000) % 86400000000) / 86400000000,
       SUM(units), COUNT(*), SUM(CASE WHEN on_time THEN 1 ELSE 0 END)
FROM grade_records GROUP BY 1, 2;
INSERT INTO grade_days_course_student (course_id, student_id, day, grade_sum, grade_count, on_time_count)
SELECT course_id, student_id,
       (created_at - ((created_at % 86400000000) + 86400000000) % 86400000000) / 86400000000,
       SUM(units), COUNT(*), SUM(CASE WHEN on_time THEN 1 ELSE 0 END)
FROM grade_records GROUP BY 1, 2, 3;
INSERT INTO task_days_course (course_id, day, grade_sum, grade_count, on_time_count)
SELECT course_id,
       (created_at - ((created_at % 86400000000) + 86400000000) % 86400000000) / 86400000000,
       SUM(units), COUNT(*), SUM(CASE WHEN on_time THEN 1 ELSE 0 END)
FROM task_grades GROUP BY 1, 2;
INSERT INTO task_days_course_student (course_id, student_id, day, grade_sum, grade_count, on_time_count)
SELECT course_id, student_id,
       (created_at - ((created_at % 86400000000) + 86400000000) % 86400000000) / 86400000000,
       SUM(units), COUNT(*), SUM(CASE WHEN on_time THEN 1 ELSE 0 END)
FROM task_grades GROUP BY 1, 2, 3;
