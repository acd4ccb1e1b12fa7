"""Hand-written word problems for the evaluation set: (question, the expression that solves it).

Rule: every number in a question is on the evaluation side of the number split (wordproblems.held_out),
so no training example shares one; the answer is the calculator's value of the expression.
"""

from __future__ import annotations

HANDWRITTEN: tuple[tuple[str, str], ...] = (
    ("A baker makes 23 loaves every morning. How many loaves does she make in 7 mornings?", "23 * 7"),
    ("There are 35 students in a class and 3 classes in the grade. How many students are in the grade?", "35 * 3"),
    ("Mia had 143 stickers and gave 27 to her brother. How many does she have now?", "143 - 27"),
    ("A rope is 99 metres long. It is cut into 11 equal parts. How long is each part in metres?", "99 / 11"),
    ("A notebook costs 2.75 dollars. How much do 3 notebooks cost?", "2.75 * 3"),
    ("Sam walks 3 km to school and 3 km back every day. How many km does he walk in 7 days?", "(3 + 3) * 7"),
    ("A shop gives 15% off a 255 dollar TV. How many dollars is the discount?", "255 * 15 / 100"),
    ("A movie starts at 7 o'clock and lasts 3 hours. At what hour does it end?", "7 + 3"),
    ("A tank holds 475 litres. 83 litres leak out. How many litres are left?", "475 - 83"),
    ("Lena reads 19 pages a day. How many pages does she read in 31 days?", "19 * 31"),
    ("A bus has 47 seats and 3 buses are full. How many passengers are there?", "47 * 3"),
    ("Tickets cost 11 dollars for adults and 7 dollars for children. What do 3 adult and 3 child tickets cost?",
     "3 * 11 + 3 * 7"),
    ("A farmer packs 195 eggs in cartons of 15. How many cartons does he fill?", "195 / 15"),
    ("How many minutes are in 3 hours and 15 minutes?", "3 * 60 + 15"),
    ("How many hours are in 7 days?", "7 * 24"),
    ("A runner runs 7 laps of 399 metres. How far does she run in metres?", "7 * 399"),
    ("Omar earns 15 dollars an hour and works 23 hours. How much does he earn?", "15 * 23"),
    ("A library had 1003 books and lent out 379. How many are still on the shelves?", "1003 - 379"),
    ("3 friends share 231 dollars equally. How much does each get?", "231 / 3"),
    ("A phone costs 399 dollars and is 15% off. What is the sale price?", "399 - 399 * 15 / 100"),
    ("A pack of 7 pens costs 5.95 dollars. What does each pen cost?", "5.95 / 7"),
    ("A garden is 23 metres long and 11 metres wide. What is its area in square metres?", "23 * 11"),
    ("A school orders 27 boxes of 35 pencils. How many pencils is that?", "27 * 35"),
    ("A car uses 7 litres of fuel each hour. How much fuel does it use in 11 hours?", "7 * 11"),
    ("Kofi has 63 marbles, Rosa has 39 and Wen has 47. How many marbles do they have together?", "63 + 39 + 47"),
    ("The temperature was 3 degrees and rose by 19 degrees. What is the temperature now?", "3 + 19"),
    ("A pizza is cut into 7 slices. How many slices are in 15 pizzas?", "7 * 15"),
    ("Ana saved 43 dollars in March and 75 dollars in April, then spent 59. How much does she have left?",
     "43 + 75 - 59"),
    ("Water costs 0.75 dollars a bottle. How much do 23 bottles cost?", "0.75 * 23"),
    ("A train leaves with 311 passengers; 47 get off and 23 get on. How many passengers are on the train now?",
     "311 - 47 + 23"),
)
